-- One stratum's row of stratum_thresholds.sql; its ties are counted for every stratum at once after
-- (stratum_ties.sql), its last tied id where needed after that (stratum_last_tied.sql).
insert into stratum_thresholds values ($stratum, $n, $k, $threshold, null, null, null);
