-- The uniform arm: a seeded random sample of the candidates holding about $tokens tokens (the Difference
-- Sampling arm's), drawn afresh per $seed: candidates in a seeded random order, up to the last that still fits.
with ordered as (
    select
        *,
        sum(n_tokens) over (order by md5(instance_id || ':' || $seed), instance_id rows unbounded preceding)
            as tokens_so_far
    from candidates
),

final as (
    select * from ordered
    where tokens_so_far <= $tokens
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
