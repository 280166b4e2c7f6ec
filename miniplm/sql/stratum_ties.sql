-- Every stratum's candidates tied at its threshold (tied) and how many of them still fit (ties = k - those above
-- it), counted in one pass over the keys for every stratum.
update stratum_thresholds
set
    tied = around.tied,
    ties = stratum_thresholds.k - around.above
from (
    select
        stratum_keys.stratum,
        count(*) filter (where stratum_keys.key > stratum_thresholds.threshold) as above,
        count(*) filter (where stratum_keys.key = stratum_thresholds.threshold) as tied
    from stratum_keys
    inner join stratum_thresholds using (stratum)
    group by stratum_keys.stratum
) as around
where stratum_thresholds.stratum = around.stratum;
