-- Live documents that no source of the previous run held ($previous: that run's source keys).
select count(*)
from documents
where source_key not in (select unnest($previous::varchar[]))
    and doc_id not in (
        select doc_id
        from read_parquet('documents/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
        where source_key in (select unnest($previous::varchar[]))
    );
