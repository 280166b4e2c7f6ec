"""The corpus as the teacher sees it (step 1 to 3 of the pipeline): reading sources into documents (with
quarantine), cutting documents into teacher-token instances, splitting off D_ref and the held-out slice, and the
token sequences and tokenizer a student trains on.

May import `miniplm.store`, `miniplm.config` and `miniplm.progress`."""
