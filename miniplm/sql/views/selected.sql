-- The current selection: rank 1 is the highest score. Its members are picked before they are ranked, so only they
-- are sorted (a filter on `selection_members` would rank every selection's members first).
create or replace view selected as
with members as (
    select distinct on (instance_id)
        instance_id,
        score,
        n_tokens
    from member_rows
    where selection_id = (select selection_id from current_run)
)

select
    instance_id,
    score,
    row_number() over (order by score desc, instance_id asc) as rank,
    n_tokens
from members;
