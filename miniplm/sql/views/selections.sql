-- One row per selection ever made here: parameters, fingerprints, counts, threshold. (Selections recorded before
-- the strata, temperature and seed columns existed read them as null.)
create or replace view selections as
select distinct on (selection_id) * from read_parquet('selections/*.parquet', union_by_name = true);
