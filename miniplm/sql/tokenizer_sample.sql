-- The pool's documents that fit the student's tokenizer: a seeded share of them ($slots in a million, by a hash
-- of doc_id), in a stable order. Never D_ref, the held-out documents or a target set.
select text
from documents
where split = 'pool' and hash(doc_id || ':student-tokenizer') % 1000000 < $slots
order by doc_id;
