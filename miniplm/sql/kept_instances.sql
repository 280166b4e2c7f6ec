-- One selection's kept instances with their teacher tokens and source, best first or in a seeded shuffle: what
-- `miniplm export` writes.
with members as (
    select
        instance_id,
        score,
        rank
    from selection_members
    where selection_id = $selection_id
),

final as (
    select
        members.rank,
        members.instance_id,
        instances.doc_id,
        instances.chunk_index,
        documents.source,
        members.score,
        instances.n_tokens,
        instances.token_ids
    from members
    inner join instances using (instance_id)
    inner join documents on documents.doc_id = instances.doc_id
)

select * from final
-- md5, not hash(): the same seed gives the same order whatever DuckDB's version
order by case when $shuffle then md5(concat($seed::varchar, ':', instance_id)) end, rank;
