-- How many candidates score strictly above $threshold (all kept; the rest of the k come from ties at it).
select count(*)
from candidates
where score > $threshold;
