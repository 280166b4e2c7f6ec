-- One selection's kept instances grouped by document, for the trainers' formats that mark document ends (Megatron's
-- indexed dataset, nanoGPT's bins): each document's kept instances together in chunk order, documents ordered by
-- their best instance's rank or in a seeded shuffle. `last_of_document` marks where a document's kept instances
-- end; `heldout` puts whole documents, in a seeded order, into a held-out split until it holds $n_heldout instances
-- (never the last document in that order: the training split is never empty).
with members as (
    select
        instance_id,
        score,
        rank
    from selection_members
    where selection_id = $selection_id
),

kept as (
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
),

kept_documents as (
    select
        doc_id,
        min(rank) as doc_rank,
        max(chunk_index) as last_chunk,
        count(*) as n_kept,
        -- md5, not hash(): the same seed gives the same split whatever DuckDB's version
        md5(concat($heldout_seed::varchar, ':', doc_id)) as heldout_key
    from kept
    group by doc_id
),

split_documents as (
    select
        doc_id,
        doc_rank,
        last_chunk,
        coalesce(
            sum(n_kept) over (order by heldout_key, doc_id rows between unbounded preceding and 1 preceding), 0
        ) < $n_heldout
        and row_number() over (order by heldout_key, doc_id) < count(*) over () as heldout
    from kept_documents
),

final as (
    select
        kept.*,
        kept.chunk_index = split_documents.last_chunk as last_of_document,
        split_documents.heldout,
        split_documents.doc_rank
    from kept
    inner join split_documents using (doc_id)
)

select * exclude (doc_rank) from final
order by case when $shuffle then md5(concat($seed::varchar, ':', doc_id)) end, doc_rank, chunk_index;
