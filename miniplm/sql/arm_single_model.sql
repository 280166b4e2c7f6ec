-- Single-model selection (perplexity filtering): the candidates ranked by one model's mean log-prob alone
-- ($model: 'teacher' or 'reference'), highest first (lowest perplexity), and ranks $lo < rank <= $hi kept
-- (the low-, middle- or high-perplexity band).
with by_model as (
    select
        instance_id,
        score,
        n_tokens,
        case when $model = 'teacher' then teacher_logp else ref_logp end as logp
    from candidates
),

ranked as (
    select
        *,
        row_number() over (order by logp desc, instance_id) as rank
    from by_model
),

final as (
    select * from ranked
    where rank > $lo and rank <= $hi
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
