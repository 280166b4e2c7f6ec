-- The positive control: a seeded random sample of the candidates of the control sources only ($sources, file
-- names or paths of target-like text), holding about $tokens tokens (the Difference Sampling arm's).
with control as (
    select
        candidates.instance_id,
        candidates.score,
        candidates.n_tokens
    from candidates
    inner join documents using (doc_id)
    where list_contains($sources, documents.source) or list_contains($sources, parse_filename(documents.source))
),

ordered as (
    select
        *,
        sum(n_tokens) over (order by md5(instance_id || ':control:' || $seed), instance_id rows unbounded preceding)
            as tokens_so_far
    from control
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
