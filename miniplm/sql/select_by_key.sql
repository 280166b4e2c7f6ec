-- A selection beyond the paper's: in each stratum, the candidates whose key is above the stratum's threshold and
-- those tied at it up to the last tied id that fits (stratum_thresholds.sql), so each keeps exactly its k. One pass
-- over the candidates, their keys computed again as for the thresholds (ranking_keys.sql): cheaper than keeping every
-- candidate's id between the two.
with keys as (
    select * from ranking_keys($temperature, $seed, $by_source)
),

final as (
    select keys.*
    from keys
    inner join stratum_thresholds using (stratum)
    where
        keys.key > stratum_thresholds.threshold
        or (
            keys.key = stratum_thresholds.threshold
            and (
                stratum_thresholds.last_tied_id is null
                or keys.instance_id <= stratum_thresholds.last_tied_id
            )
        )
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
