-- D_ref's validation slice (documents whose slot is below $cutoff, or the one named $fallback), its instances with their source file, in a
-- seeded order, up to about $limit tokens: what the teacher and the reference are compared on, per source.
with documents_of_split as (
    select
        doc_id,
        source,
        hash(doc_id || ':' || $salt) % 1000000 as slot
    from documents
    where split = $split
),

validation as (
    select
        documents_of_split.source,
        instances.instance_id,
        instances.token_ids,
        instances.n_tokens,
        sum(instances.n_tokens) over (order by hash(instances.instance_id || ':gap'), instances.instance_id
            rows unbounded preceding) as tokens_so_far
    from instances
    inner join documents_of_split using (doc_id)
    where documents_of_split.slot < $cutoff or instances.doc_id = $fallback
)

select
    source,
    token_ids
from validation
where tokens_so_far <= $limit
order by source, instance_id;
