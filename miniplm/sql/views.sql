-- The public views of a miniplm work directory (README: "The scored corpus in SQL").
-- Generated for one run: the placeholders are filled with that run's Parquet files and model fingerprints.
-- Paths are relative to the work directory: run from inside it, or `set file_search_path = '<workdir>'`.

create or replace view sources as
select *
from (values ${sources_values}) as t (source_order, source, source_key);

create or replace view splits as
select distinct
    doc_id,
    split
from ${splits_relation};

create or replace view documents as
with raw as (
    select * from ${documents_relation}
),

ordered as (
    select
        raw.*,
        sources.source_order
    from raw
    inner join sources using (source_key)
),

first_seen as (
    select * from ordered
    qualify row_number() over (partition by doc_id order by source_order, row) = 1
),

final as (
    select
        first_seen.doc_id,
        first_seen.text,
        first_seen.source,
        first_seen.row,
        first_seen.n_chars,
        first_seen.source_key,
        splits.split
    from first_seen
    inner join splits using (doc_id)
)

select * from final;

create or replace view quarantine as
select * from ${quarantine_relation};

create or replace view instance_index as
with raw as (
    select instance_id, doc_id, chunk_index, n_tokens from ${instances_relation}
),

final as (
    select distinct on (raw.instance_id)
        raw.instance_id,
        raw.doc_id,
        raw.chunk_index,
        raw.n_tokens,
        splits.split
    from raw
    inner join splits using (doc_id)
)

select * from final;

create or replace view instances as
select distinct on (raw.instance_id)
    raw.instance_id,
    raw.doc_id,
    raw.chunk_index,
    raw.n_tokens,
    raw.token_ids,
    splits.split
from ${instances_relation} as raw
inner join splits using (doc_id);

create or replace view models as
select *
from (values ${models_values}) as t (model_fp, role, spec, path);

create or replace view scores as
with raw as (
    select * from ${scores_relation}
),

final as (
    select
        raw.model_fp,
        models.role,
        models.spec,
        raw.instance_id,
        raw.n_predicted,
        raw.sum_logp,
        raw.mean_logp
    from raw
    left join models using (model_fp)
)

select * from final;

create or replace view scored as
with candidates as (
    select instance_id, doc_id, n_tokens from instance_index where split = 'pool'
),

teacher as (
    select instance_id, n_predicted, sum_logp, mean_logp from scores where model_fp = '${teacher_fp}'
),

reference as (
    select instance_id, sum_logp, mean_logp from scores where model_fp = '${reference_fp}'
),

final as (
    select
        candidates.instance_id,
        candidates.doc_id,
        candidates.n_tokens,
        teacher.mean_logp as teacher_logp,
        reference.mean_logp as ref_logp,
        teacher.mean_logp - reference.mean_logp as score,
        teacher.n_predicted,
        teacher.sum_logp as teacher_sum_logp,
        reference.sum_logp as ref_sum_logp
    from candidates
    left join teacher using (instance_id)
    left join reference using (instance_id)
)

select * from final;

create or replace view selections as
select * from ${selections_relation};

create or replace view selection_members as
select
    selection_id,
    instance_id,
    score,
    n_tokens,
    -- ranks are derived here rather than stored: keeping the top fraction needs no sort of the kept rows
    row_number() over (partition by selection_id order by score desc, instance_id asc) as rank
from ${members_relation};

create or replace view selected as
select
    instance_id,
    score,
    row_number() over (order by score desc, instance_id asc) as rank,
    n_tokens
from ${members_relation}
where selection_id = '${current_selection_id}';

create or replace view ingest_stats as
select * from ${stats_relation};

create or replace view accounting as
with stats as (
    select * from ingest_stats
),

docs as (
    select * from documents
),

first_source_duplicates as (
    -- documents a source holds that an earlier source already had
    select
        raw.source_key,
        count(*) as n
    from ${documents_relation} as raw
    anti join docs on raw.doc_id = docs.doc_id and raw.source_key = docs.source_key
    group by raw.source_key
),

per_doc as (
    select
        source_key,
        count(*) as documents,
        count(*) filter (where split = 'reference') as in_reference,
        count(*) filter (where split = 'heldout') as heldout,
        count(*) filter (where split = 'pool') as in_pool
    from docs
    group by source_key
),

per_instance as (
    select
        docs.source_key,
        count(*) as candidates,
        count(*) filter (where not isfinite(scored.score)) as nonfinite,
        count(selected.instance_id) as kept
    from scored
    inner join docs using (doc_id)
    left join selected using (instance_id)
    group by docs.source_key
),

final as (
    select
        sources.source,
        stats.rows_read,
        stats.duplicates_in_source + coalesce(first_source_duplicates.n, 0) as duplicates,
        stats.quarantined,
        coalesce(per_doc.documents, 0) as documents,
        coalesce(per_doc.in_reference, 0) as in_reference,
        coalesce(per_doc.heldout, 0) as heldout,
        coalesce(per_doc.in_pool, 0) as in_pool,
        coalesce(per_instance.candidates, 0) as candidates,
        coalesce(per_instance.nonfinite, 0) as nonfinite,
        coalesce(per_instance.kept, 0) as kept
    from sources
    inner join stats using (source_key)
    left join first_source_duplicates using (source_key)
    left join per_doc using (source_key)
    left join per_instance using (source_key)
    order by sources.source_order
)

select * from final;
