-- Difference Sampling: the $k best candidates by score = mean teacher log-prob - mean reference log-prob,
-- ordered by score DESC, instance_id ASC. $threshold is the $k-th highest score (score_threshold.sql) and
-- $ties how many candidates scoring exactly $threshold still fit; no full sort of the candidates is needed.
with above as (
    select * from candidates
    where score > $threshold
),

at_threshold as (
    select * from candidates
    where score = $threshold
    order by instance_id
    limit $ties
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
