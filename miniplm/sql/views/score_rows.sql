-- Every score row as written, a row written twice (by two concurrent runs) twice: `scores` and `scored` read it
-- and keep one row per key. `scored` filters it by model before deduplicating, so DuckDB reads only the current
-- models' shards (a filter above the deduplication would not reach the files).
create or replace view score_rows as
select
    model_fp,
    variant,
    instance_id,
    n_predicted,
    sum_logp,
    mean_logp
from read_parquet('scores/*/*/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false);
