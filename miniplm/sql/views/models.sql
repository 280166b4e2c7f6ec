-- Every model that ever scored in this work directory.
create or replace table models as
select
    model_fp,
    role,
    spec,
    path
from read_parquet('catalog/models.parquet');
