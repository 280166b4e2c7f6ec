-- The held-out documents (never D_ref, never candidates), with their source, in a stable order.
select
    doc_id,
    source,
    text
from documents
where split = 'heldout'
order by doc_id;
