-- The $k-th highest finite score: every candidate above it is kept, ties at it are broken by instance_id.
-- Sorting the scores alone (8 bytes a row) is far cheaper than sorting (score, instance_id) rows.
select score
from candidates
order by score desc
limit 1 offset $k - 1;
