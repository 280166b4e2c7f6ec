-- The sign check: as many candidates as Difference Sampling keeps ($k), from the other end of the ranking (the
-- lowest scores first, ties by instance_id). If the score means anything, students trained on these do worse.
select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from candidates
order by score asc, instance_id asc
limit $k;
