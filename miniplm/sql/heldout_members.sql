-- The held-out instances (never candidates), listed like a selection so they export the same way.
select
    'heldout' as selection_id,
    instance_id,
    null::double as score,
    n_tokens
from instance_index
where split = 'heldout';
