-- The run's inputs, in the order given: a document found in several sources belongs to the first.
create or replace table sources as
select
    source_order,
    source,
    source_key
from read_parquet('catalog/sources.parquet');
