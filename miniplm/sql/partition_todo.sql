-- The tokens of one partition's instances that have no score in its scores folder yet (a resumed partition
-- scores only what its last checkpoint did not save).
with planned as (
    select instance_id from read_parquet($plan)
),

saved as (
    select instance_id from read_parquet($saved)
),

todo as (
    select instance_id from planned
    anti join saved using (instance_id)
),

final as (
    select
        shard.instance_id,
        shard.token_ids
    from read_parquet($shard) as shard
    semi join todo using (instance_id)
)

select * from final
order by instance_id;
