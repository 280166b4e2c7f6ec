-- Every live instance once, without its tokens (cheap), with its split, the shard that holds it and the source (the
-- input as listed) its document belongs to: the first in source order that holds it, as in the documents view.
create or replace view instance_index as
with raw as (
    select
        instance_id,
        doc_id,
        chunk_index,
        n_tokens,
        source_key,
        filename
    from read_parquet('instances/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false, filename = true)
    where spec = (select instance_spec from current_run) and source_key in (select source_key from sources)
),

ordered as (
    select
        raw.*,
        sources.source,
        sources.source_order
    from raw
    inner join sources using (source_key)
),

deduplicated as (
    -- a document in two sources has its instances in both: keep one, always the same
    select
        instance_id,
        any_value(doc_id) as doc_id,
        any_value(chunk_index) as chunk_index,
        any_value(n_tokens) as n_tokens,
        min(filename) as shard,
        arg_min(source, source_order) as source
    from ordered
    group by instance_id
),

final as (
    select
        deduplicated.instance_id,
        deduplicated.doc_id,
        deduplicated.chunk_index,
        deduplicated.n_tokens,
        splits.split,
        deduplicated.shard,
        deduplicated.source
    from deduplicated
    inner join splits using (doc_id)
)

select * from final;
