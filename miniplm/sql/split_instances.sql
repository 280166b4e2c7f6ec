-- Token ids of every instance in one split ('reference', 'heldout' or 'pool'), in a stable order.
select
    instance_id,
    token_ids
from instances
where split = $split
order by instance_id;
