-- Difference Sampling: the $k best candidates by score = mean teacher log-prob - mean reference log-prob.
-- $k = floor(alpha * N) over the N candidates with a finite score; ties broken by instance_id.
with candidates as (
    select
        instance_id,
        score,
        n_tokens
    from scored
    where isfinite(score)
),

top_k as (
    select * from candidates
    order by score desc, instance_id asc
    limit $k
),

final as (
    select
        instance_id,
        score,
        n_tokens,
        row_number() over (order by score desc, instance_id asc) as rank
    from top_k
)

select
    instance_id,
    score,
    n_tokens,
    rank
from final;
