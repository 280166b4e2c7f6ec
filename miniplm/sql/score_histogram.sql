-- The candidates' finite scores in $bins equal-width bins from the lowest to the highest score.
with finite as (
    select score from candidates
),

bounds as (
    select
        min(score) as lo,
        max(score) as hi
    from finite
),

binned as (
    select coalesce(least(floor((finite.score - bounds.lo) / nullif(bounds.hi - bounds.lo, 0) * $bins), $bins - 1), 0)
        ::integer as bin
    from finite, bounds
)

select
    binned.bin,
    bounds.lo + binned.bin * (bounds.hi - bounds.lo) / $bins as left_edge,
    bounds.lo + (binned.bin + 1) * (bounds.hi - bounds.lo) / $bins as right_edge,
    count(*) as n
from binned, bounds
group by all
order by binned.bin;
