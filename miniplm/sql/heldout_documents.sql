-- At most $limit held-out documents (never D_ref, never candidates), with their source: a seeded choice by a hash
-- of their ids, so the same documents judge every student.
select
    doc_id,
    source,
    text
from documents
where split = 'heldout'
order by hash(doc_id || ':heldout'), doc_id
limit $limit;
