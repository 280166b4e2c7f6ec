-- Each stratum's candidates.
select
    stratum,
    count(*) as n
from stratum_keys
group by stratum
order by stratum;
