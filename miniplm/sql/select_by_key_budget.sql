-- A token budget beyond the paper's: the candidates by key (key DESC, instance_id ASC) while their tokens fit the
-- budget; with strata, each source's budget is its share of the candidates' tokens.
with keys as (
    select * from ranking_keys($temperature, $seed, $by_source)
),

stratum_tokens as (
    select
        stratum,
        sum(n_tokens) as tokens
    from keys
    group by stratum
),

budgets as (
    select
        stratum,
        floor($budget_tokens * tokens / (select sum(tokens) from stratum_tokens)) as budget
    from stratum_tokens
),

ranked as (
    select
        *,
        sum(n_tokens) over (
            partition by stratum order by key desc, instance_id asc rows unbounded preceding
        ) as cumulative_tokens
    from keys
),

final as (
    select ranked.*
    from ranked
    inner join budgets using (stratum)
    where ranked.cumulative_tokens <= budgets.budget
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
