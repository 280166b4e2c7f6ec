-- Every live instance once, with its tokens in the teacher's tokenizer.
create or replace view instances as
with raw as (
    select
        instance_id,
        token_ids,
        filename
    from read_parquet('instances/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false, filename = true)
    where spec = (select instance_spec from current_run) and source_key in (select source_key from sources)
),

final as (
    -- one copy of each instance, the one instance_index names (a document in two sources has its instances in
    -- both): a join on the small index streams the tokens through, where deduplicating them would hold them all
    select
        instance_index.instance_id,
        instance_index.doc_id,
        instance_index.chunk_index,
        instance_index.n_tokens,
        raw.token_ids,
        instance_index.split
    from raw
    inner join instance_index
        on raw.instance_id = instance_index.instance_id and raw.filename = instance_index.shard
)

select * from final;
