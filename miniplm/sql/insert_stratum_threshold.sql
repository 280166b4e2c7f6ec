-- One stratum's row of stratum_thresholds.sql.
insert into stratum_thresholds values ($stratum, $n, $k, $threshold, $ties);
