-- The candidates a selection ranks: the scored pool instances whose score is finite. A NaN or infinite score (or
-- none yet) is counted (count_candidates.sql) and never kept, ranked or sampled.
create or replace view candidates as
select * from scored
where isfinite(score);
