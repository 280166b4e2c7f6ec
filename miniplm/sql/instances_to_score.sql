-- Candidate instances that have no score yet from model $model_fp: the only ones a run scores.
-- With several scoring processes, process $rank of $world_size takes one hash partition.
with candidates as (
    select instance_id from instance_index
    where split = $split and hash(instance_id) % $world_size = $rank
),

already_scored as (
    select instance_id from scores where model_fp = $model_fp
),

final as (
    select instance_id from candidates
    anti join already_scored using (instance_id)
)

select
    instances.instance_id,
    instances.token_ids
from instances
semi join final using (instance_id)
order by instances.instance_id;
