-- One row per distinct live document: its first copy in source order, with its split.
create or replace view documents as
with raw as (
    select * from read_parquet('documents/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
    where source_key in (select source_key from sources)
),

ordered as (
    select
        raw.*,
        sources.source_order
    from raw
    inner join sources using (source_key)
),

first_seen as (
    select * from ordered
    qualify row_number() over (partition by doc_id order by source_order, row) = 1
),

final as (
    select
        first_seen.doc_id,
        first_seen.text,
        first_seen.source,
        first_seen.row,
        first_seen.n_chars,
        first_seen.truncated,
        first_seen.source_key,
        splits.split
    from first_seen
    inner join splits using (doc_id)
)

select * from final;
