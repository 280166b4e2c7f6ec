-- The candidates' finite scores per source file, in $bins equal-width bins over the whole range.
with finite as (
    select
        scored.score,
        documents.source
    from scored
    inner join documents using (doc_id)
    where isfinite(scored.score)
),

bounds as (
    select
        min(score) as lo,
        max(score) as hi
    from finite
),

binned as (
    select
        finite.source,
        coalesce(least(floor((finite.score - bounds.lo) / nullif(bounds.hi - bounds.lo, 0) * $bins), $bins - 1), 0)
            ::integer as bin
    from finite, bounds
)

select
    binned.source,
    binned.bin,
    bounds.lo + binned.bin * (bounds.hi - bounds.lo) / $bins as left_edge,
    bounds.lo + (binned.bin + 1) * (bounds.hi - bounds.lo) / $bins as right_edge,
    count(*) as n
from binned, bounds
group by all
order by binned.source, binned.bin;
