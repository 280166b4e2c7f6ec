-- Per stratum: its candidates n, how many it keeps k = floor($alpha * n), the k-th highest key, and how many
-- candidates tied at that key still fit ($ties): every candidate above it is kept, ties are broken by instance_id.
-- Only keys are sorted here, not (key, instance_id) rows. A stratum that keeps none has no row.
create or replace temp table stratum_thresholds as
with keys as (
    select
        stratum,
        key
    from ranking_keys($temperature, $seed, $by_source)
),

counts as (
    select
        stratum,
        count(*) as n,
        floor($alpha * count(*))::bigint as k
    from keys
    group by stratum
),

positioned as (
    select
        stratum,
        key,
        row_number() over (partition by stratum order by key desc) as position
    from keys
),

thresholds as (
    select
        counts.stratum,
        counts.n,
        counts.k,
        positioned.key as threshold
    from counts
    inner join positioned on positioned.stratum = counts.stratum and positioned.position = counts.k
),

above as (
    select
        keys.stratum,
        count(*) filter (where keys.key > thresholds.threshold) as n_above
    from keys
    inner join thresholds using (stratum)
    group by keys.stratum
),

final as (
    select
        thresholds.stratum,
        thresholds.n,
        thresholds.k,
        thresholds.threshold,
        thresholds.k - above.n_above as ties
    from thresholds
    inner join above using (stratum)
)

select * from final;
