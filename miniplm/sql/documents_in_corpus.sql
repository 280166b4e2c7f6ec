-- Which of the ids in $ids are documents of the corpus (any split): a target document among them is not held out.
select doc_id from documents
where doc_id in (select unnest($ids::varchar[]));
