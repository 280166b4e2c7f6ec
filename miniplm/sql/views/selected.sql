-- The current selection: rank 1 is the highest score.
create or replace view selected as
select
    instance_id,
    score,
    rank,
    n_tokens
from selection_members
where selection_id = (select selection_id from current_run);
