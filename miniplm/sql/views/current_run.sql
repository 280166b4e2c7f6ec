-- What this run's views read: its instance spec and split, the scoring models and variant, the current selection.
create or replace table current_run as
select
    instance_spec,
    split_key,
    teacher_fp,
    reference_fp,
    variant,
    selection_id
from read_parquet('catalog/current_run.parquet');
