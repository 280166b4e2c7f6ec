-- Per stratum: its candidates n, how many it keeps k = floor(alpha * n), the k-th highest key (threshold), how many
-- candidates tied at it (tied) and how many of those still fit (ties), and, when not all of them fit, the last tied
-- instance_id that does (last_tied_id, stratum_last_tied.sql; null: every tie is kept): every candidate above the
-- threshold is kept, ties are broken by instance_id. Thresholds found one stratum at a time, ties counted for every
-- stratum in one pass (stratum_ties.sql; miniplm.selection.select.stratum_thresholds); a stratum that keeps none has
-- no row.
create or replace temp table stratum_thresholds (
    stratum uinteger,
    n bigint,
    k bigint,
    threshold double,
    tied bigint,
    ties bigint,
    last_tied_id varchar
);
