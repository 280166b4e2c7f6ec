-- The thresholds of the strata where only some of the candidates tied at the threshold fit.
select threshold
from stratum_thresholds
where ties < tied;
