-- Every candidate's ranking key and stratum (ranking_keys.sql), computed once and kept as a table for the
-- thresholds and for writing the kept rows: the thresholds sort each stratum's keys alone (8 bytes a row), which
-- spills to disk past the memory limit, where a window over (stratum, key) rows ran out of memory at 100M candidates.
create or replace temp table stratum_keys as
select
    stratum,
    key,
    instance_id,
    score,
    n_tokens
from ranking_keys($temperature, $seed, $by_source);
