-- The partitions of a scoring plan, with their sizes.
select
    source_key,
    part::integer as part,
    bucket::integer as bucket,
    count(*) as instances,
    sum(n_tokens) as tokens
from read_parquet($plan_files, hive_partitioning = true, hive_types_autocast = false)
group by all
order by all;
