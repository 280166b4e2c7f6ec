-- Every live document id (any split): a target document among them was not held out from training.
select doc_id from documents;
