-- The members of every selection; ranks are derived here rather than stored (keeping needs no sort).
create or replace view selection_members as
with members as (
    -- one row per (selection, instance), even if a members file was ever written twice
    select distinct on (selection_id, instance_id)
        selection_id,
        instance_id,
        score,
        n_tokens
    from member_rows
)

select
    selection_id,
    instance_id,
    score,
    n_tokens,
    row_number() over (partition by selection_id order by score desc, instance_id asc) as rank
from members;
