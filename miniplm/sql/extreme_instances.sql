-- The highest-scored ($descending = true) or lowest-scored candidates, with the start of their document's text.
with ranked as (
    select
        scored.instance_id,
        scored.score,
        scored.teacher_logp,
        scored.ref_logp,
        scored.doc_id
    from scored
    where isfinite(scored.score)
    order by
        case when $descending then -scored.score else scored.score end,
        scored.instance_id
    limit $n
),

final as (
    select
        ranked.instance_id,
        ranked.score,
        ranked.teacher_logp,
        ranked.ref_logp,
        left(documents.text, 160) as preview
    from ranked
    inner join documents using (doc_id)
)

select * from final
order by case when $descending then -score else score end, instance_id;
