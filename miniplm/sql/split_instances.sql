-- Token ids of the instances of one split ('reference', 'heldout' or 'pool'), in a stable order, marked when
-- their document is in the validation slice (slot below $cutoff, or the one document named $fallback).
with documents_of_split as (
    select
        doc_id,
        hash(doc_id || ':' || $salt) % 1000000 as slot
    from splits
    where split = $split
),

final as (
    select
        instances.instance_id,
        instances.token_ids,
        documents_of_split.slot < $cutoff or instances.doc_id = $fallback as validation
    from instances
    inner join documents_of_split using (doc_id)
)

select * from final
order by instance_id;
