-- Difference Sampling with another reference: the candidates ranked by the teacher's mean log-prob minus that of
-- the reference $alt_fp (the other size tried), score DESC, instance_id ASC, and the first $k kept.
with teacher as (
    select instance_id, mean_logp
    from scores
    where model_fp = $teacher_fp and variant = $variant
),

alternative as (
    select instance_id, mean_logp
    from scores
    where model_fp = $alt_fp and variant = $variant
),

candidates as (
    select
        instance_index.instance_id,
        instance_index.n_tokens,
        teacher.mean_logp - alternative.mean_logp as score
    from instance_index
    inner join teacher using (instance_id)
    inner join alternative using (instance_id)
    where instance_index.split = 'pool' and isfinite(teacher.mean_logp - alternative.mean_logp)
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from candidates
order by score desc, instance_id asc
limit $k;
