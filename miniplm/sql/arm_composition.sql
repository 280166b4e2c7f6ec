-- What a member list holds, per source file of the corpus: instances and teacher tokens.
with members as (
    select * from read_parquet($members_path)
),

final as (
    select
        documents.source,
        count(*) as instances,
        sum(instance_index.n_tokens) as tokens
    from members
    inner join instance_index using (instance_id)
    inner join documents using (doc_id)
    group by documents.source
)

select * from final
order by source;
