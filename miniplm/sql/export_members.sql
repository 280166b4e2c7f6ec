-- The instances of a member list (a selection or a sample), with their tokens, in rank order.
with members as (
    select * from read_parquet($members_path)
),

final as (
    select
        row_number() over (order by members.score desc nulls last, members.instance_id) as rank,
        members.instance_id,
        instances.doc_id,
        instances.chunk_index,
        members.score,
        instances.token_ids
    from members
    inner join instances using (instance_id)
)

select * from final
order by rank;
