-- The candidates model $model_fp has not scored yet (score variant $variant), each assigned to a partition:
-- the instance shard that holds it, and a bucket of hash(instance_id) within the shard, about $partition_tokens
-- tokens a bucket. A partition reads one shard only, whatever the size of the corpus.
with candidates as (
    select
        instance_id,
        n_tokens,
        shard
    from instance_index
    where split = 'pool'
),

already_scored as (
    select instance_id from scores
    where model_fp = $model_fp and variant = $variant
),

todo as (
    select * from candidates
    anti join already_scored using (instance_id)
),

per_shard as (
    select
        shard,
        ceil(sum(n_tokens) / $partition_tokens)::bigint as buckets
    from todo
    group by shard
),

final as (
    select
        todo.instance_id,
        todo.n_tokens,
        regexp_extract(todo.shard, 'source_key=([^/]+)/', 1) as source_key,
        regexp_extract(todo.shard, 'part-([0-9]+)\.parquet', 1)::integer as part,
        (hash(todo.instance_id) % per_shard.buckets)::integer as bucket
    from todo
    inner join per_shard using (shard)
)

select * from final;
