-- Score distribution of the candidates: counts and quantiles for the run summary.
select
    count(*) as candidates,
    count(*) filter (where isfinite(score)) as finite,
    min(score) filter (where isfinite(score)) as min,
    quantile_cont(score, [0.05, 0.25, 0.5, 0.75, 0.95]) filter (where isfinite(score)) as quantiles,
    max(score) filter (where isfinite(score)) as max,
    avg(teacher_logp) filter (where isfinite(score)) as mean_teacher_logp,
    avg(ref_logp) filter (where isfinite(score)) as mean_ref_logp
from scored;
