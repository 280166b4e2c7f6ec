-- One selection's members, best first (miniplm.open(...).selected(selection_id)).
select
    instance_id,
    score,
    rank,
    n_tokens
from selection_members
where selection_id = $selection_id
order by rank;
