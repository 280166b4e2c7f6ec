-- The full-pool arm: every candidate with a finite score (those Difference Sampling ranks).
select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from candidates;
