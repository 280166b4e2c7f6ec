-- How many scored candidates can be ranked, and how many cannot (NaN/inf scores, or not yet scored).
select
    count(*) filter (where isfinite(score)) as n_finite,
    count(*) filter (where score is not null and not isfinite(score)) as n_nonfinite,
    count(*) filter (where score is null) as n_unscored
from scored;
