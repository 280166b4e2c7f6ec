-- Per source file: the scored candidates and how many of them a member list ($members_path, a selection) keeps,
-- in instances and teacher tokens: where Difference Sampling takes its data from, against the pool's own mix.
with members as (
    select instance_id from read_parquet($members_path)
),

candidates as (
    select
        documents.source,
        scored.instance_id,
        scored.n_tokens,
        members.instance_id is not null as kept
    from scored
    inner join documents using (doc_id)
    left join members using (instance_id)
    where isfinite(scored.score)
),

final as (
    select
        source,
        count(*) as candidates,
        sum(n_tokens) as candidate_tokens,
        count(*) filter (where kept) as kept,
        coalesce(sum(n_tokens) filter (where kept), 0) as kept_tokens
    from candidates
    group by source
)

select * from final
order by source;
