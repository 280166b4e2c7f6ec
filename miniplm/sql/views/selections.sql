-- One row per selection ever made here: parameters, fingerprints, counts, threshold.
create or replace view selections as
select distinct on (selection_id) * from read_parquet('selections/*.parquet');
