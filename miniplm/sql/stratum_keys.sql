-- Every candidate's stratum and ranking key (ranking_keys.sql) and nothing else, for the thresholds: each stratum's
-- keys are then sorted alone (stratum_kth_key.sql), which spills to disk past the memory limit, where a window over
-- (stratum, key) rows ran out of memory at 100M candidates. The ids stay out (at 100M they made this table several
-- times the memory limit): ties that do not all fit are cut by a look at the tied rows alone (stratum_last_tied.sql),
-- and the kept rows are read again in one pass (select_by_key.sql).
create or replace temp table stratum_keys as
select
    stratum,
    key
from ranking_keys($temperature, $seed, $by_source);
