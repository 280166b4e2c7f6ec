-- Where every input row went, per live source: rows_read = documents + duplicates + quarantined.
create or replace view accounting as
with stats as (
    select * from ingest_stats
),

docs as (
    select * from documents
),

per_doc as (
    select
        source_key,
        count(*) as documents,
        count(*) filter (where split = 'reference') as in_reference,
        count(*) filter (where split = 'heldout') as heldout,
        count(*) filter (where split = 'pool') as in_pool
    from docs
    group by source_key
),

per_instance as (
    select
        docs.source_key,
        count(*) as candidates,
        count(*) filter (where not isfinite(scored.score)) as nonfinite,
        count(selected.instance_id) as kept
    from scored
    inner join docs using (doc_id)
    left join selected using (instance_id)
    group by docs.source_key
),

final as (
    select
        sources.source,
        stats.rows_read,
        -- written rows that are not a document's first copy, and copies ingest saw in the same shard
        stats.written - coalesce(per_doc.documents, 0) + stats.duplicates_in_shard as duplicates,
        stats.quarantined,
        stats.truncated,
        coalesce(per_doc.documents, 0) as documents,
        coalesce(per_doc.in_reference, 0) as in_reference,
        coalesce(per_doc.heldout, 0) as heldout,
        coalesce(per_doc.in_pool, 0) as in_pool,
        coalesce(per_instance.candidates, 0) as candidates,
        coalesce(per_instance.nonfinite, 0) as nonfinite,
        coalesce(per_instance.kept, 0) as kept
    from sources
    inner join stats using (source_key)
    left join per_doc using (source_key)
    left join per_instance using (source_key)
    order by sources.source_order
)

select * from final;
