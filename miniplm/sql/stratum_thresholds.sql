-- Per stratum: its candidates n, how many it keeps k = floor(alpha * n), the k-th highest key, and how many
-- candidates tied at that key still fit (ties): every candidate above it is kept, ties are broken by instance_id.
-- Filled one stratum at a time (miniplm.selection.select.stratum_thresholds); a stratum that keeps none has no row.
create or replace temp table stratum_thresholds (
    stratum varchar,
    n bigint,
    k bigint,
    threshold double,
    ties bigint
);
