-- D_ref ('reference'), held-out ('heldout') or candidate pool ('pool') of every live document.
create or replace view splits as
with raw as (
    select
        doc_id,
        split
    from read_parquet('splits/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
    where split_key = (select split_key from current_run) and source_key in (select source_key from sources)
),

final as (
    select distinct
        doc_id,
        split
    from raw
)

select * from final;
