-- The baseline: a seeded uniform sample of $k candidates, the same size as a selection.
with final as (
    select * from candidates
    order by md5(instance_id || ':' || $seed), instance_id
    limit $k
)

select
    $selection_id as selection_id,
    instance_id,
    score,
    n_tokens
from final;
