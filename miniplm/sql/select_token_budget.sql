-- Difference Sampling with a token budget: the best candidates by score while their tokens fit $budget_tokens.
with ranked as (
    select
        instance_id,
        score,
        n_tokens,
        sum(n_tokens) over (order by score desc, instance_id asc rows unbounded preceding) as cumulative_tokens
    from candidates
),

final as (
    select * from ranked
    where cumulative_tokens <= $budget_tokens
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
