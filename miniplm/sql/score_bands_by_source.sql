-- What each band of the ranking holds, per source file: the candidates ranked by score (DESC, instance_id ASC, as
-- the selection ranks them) and cut at the fractions $edges (a sorted list, e.g. [0.3, 0.5, 0.7]: the top 30%,
-- 30-50%, 50-70% and the bottom 30% of the candidates); per band and source, instances, teacher tokens and the mean
-- log-probabilities. Which band holds what says why a selection keeps what it keeps.
with ranked as (
    select
        documents.source,
        scored.n_tokens,
        scored.teacher_logp,
        scored.ref_logp,
        scored.score,
        (row_number() over (order by scored.score desc, scored.instance_id) - 1)
            / count(*) over () as rank_fraction
    from scored
    inner join documents using (doc_id)
    where isfinite(scored.score)
),

banded as (
    select
        *,
        len(list_filter($edges, lambda edge: edge <= rank_fraction)) as band
    from ranked
),

final as (
    select
        band,
        source,
        count(*) as instances,
        sum(n_tokens) as tokens,
        avg(teacher_logp) as teacher_logp,
        avg(ref_logp) as ref_logp,
        avg(score) as score
    from banded
    group by band, source
)

select * from final
order by band, source;
