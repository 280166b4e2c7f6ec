-- The documents of one split ('reference', 'heldout' or 'pool'), each with a seeded hash in [0, 1e6) that
-- picks a slice of them (D_ref's validation slice), in a stable order.
select
    doc_id,
    hash(doc_id || ':' || $salt) % 1000000 as slot
from splits
where split = $split
order by slot, doc_id;
