-- Every live instance once, with its tokens in the teacher's tokenizer.
create or replace view instances as
with raw as (
    select
        instance_id,
        doc_id,
        chunk_index,
        n_tokens,
        token_ids
    from read_parquet('instances/spec=${instance_spec}/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
    where source_key in (select source_key from sources)
),

final as (
    select distinct on (raw.instance_id)
        raw.instance_id,
        raw.doc_id,
        raw.chunk_index,
        raw.n_tokens,
        raw.token_ids,
        splits.split
    from raw
    inner join splits using (doc_id)
)

select * from final;
