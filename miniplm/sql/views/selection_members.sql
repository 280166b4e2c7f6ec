-- The members of every selection; ranks are derived here rather than stored (keeping needs no sort).
create or replace view selection_members as
select
    selection_id,
    instance_id,
    score,
    n_tokens,
    row_number() over (partition by selection_id order by score desc, instance_id asc) as rank
from read_parquet('selected/*.parquet');
