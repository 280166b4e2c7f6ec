-- Every model that ever scored in this work directory.
create or replace table models as
select *
from (values ${models_values}) as t (model_fp, role, spec, path);
