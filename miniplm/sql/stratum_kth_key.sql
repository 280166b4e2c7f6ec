-- The $k-th highest key of one stratum: every candidate of it above this is kept, ties at it are broken by
-- instance_id (select_by_key.sql).
select key
from stratum_keys
where stratum = $stratum
order by key desc
limit 1 offset $k - 1;
