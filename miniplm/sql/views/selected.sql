-- The current selection: rank 1 is the highest score.
create or replace view selected as
select
    instance_id,
    score,
    row_number() over (order by score desc, instance_id asc) as rank,
    n_tokens
from read_parquet('selected/*.parquet')
where selection_id = '${current_selection_id}';
