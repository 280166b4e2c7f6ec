-- One stratum's row of stratum_thresholds.sql (its last tied id, where needed, comes after: stratum_last_tied.sql).
insert into stratum_thresholds values ($stratum, $n, $k, $threshold, $tied, $ties, null);
