-- How many of one stratum's candidates have a key above its threshold (all kept), and how many tied at it.
select
    count(*) filter (where key > $threshold) as above,
    count(*) filter (where key = $threshold) as tied
from stratum_keys
where stratum = $stratum;
