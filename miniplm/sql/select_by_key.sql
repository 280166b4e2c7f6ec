-- A selection beyond the paper's: in each stratum, the candidates whose key is above the stratum's threshold and
-- the first $ties tied at it by instance_id (stratum_thresholds.sql), so each keeps exactly its k. The keys are the
-- ones stratum_keys.sql computed for the thresholds (the Gumbel noise's md5 and the sources' join once, not again).
with keys as (
    select * from stratum_keys
),

above as (
    select keys.*
    from keys
    inner join stratum_thresholds using (stratum)
    where keys.key > stratum_thresholds.threshold
),

at_threshold as (
    select keys.*
    from keys
    inner join stratum_thresholds using (stratum)
    where keys.key = stratum_thresholds.threshold
    qualify row_number() over (partition by keys.stratum order by keys.instance_id) <= stratum_thresholds.ties
),

final as (
    select * from above
    union all
    select * from at_threshold
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
