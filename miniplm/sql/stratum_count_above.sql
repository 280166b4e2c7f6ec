-- How many of one stratum's candidates have a key above its threshold.
select count(*)
from stratum_keys
where stratum = $stratum and key > $threshold;
