-- Rows of live sources that could not be documents, with the reason.
create or replace view quarantine as
select
    source,
    row,
    reason,
    raw
from read_parquet('quarantine/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
where source_key in (select source_key from sources);
