-- For every stratum where only some of the candidates tied at its threshold fit: the last of them kept, by
-- instance_id. $tied_keys (those strata's thresholds) reaches the candidates' scan, so only the tied rows are keyed,
-- in one pass for every stratum.
update stratum_thresholds
set last_tied_id = cut.instance_id
from (
    select
        keys.stratum,
        keys.instance_id
    from ranking_keys($temperature, $seed, $by_source) as keys
    inner join stratum_thresholds using (stratum)
    where
        list_contains($tied_keys, keys.key)
        and keys.key = stratum_thresholds.threshold
        and stratum_thresholds.ties < stratum_thresholds.tied
    qualify row_number() over (partition by keys.stratum order by keys.instance_id) = stratum_thresholds.ties
) as cut
where stratum_thresholds.stratum = cut.stratum;
