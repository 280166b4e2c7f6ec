-- Every selection's members as written, a members file written twice (by two runs that selected at once) twice:
-- `selection_members` and `selected` read it and keep one row per (selection, instance).
create or replace view member_rows as
select
    selection_id,
    instance_id,
    score,
    n_tokens
from read_parquet('selected/*.parquet');
