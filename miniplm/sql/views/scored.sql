-- The candidates (pool instances) with the current teacher's and reference's scores: score = teacher - reference.
create or replace view scored as
with candidates as (
    select
        instance_id,
        doc_id,
        n_tokens,
        source
    from instance_index
    where split = 'pool'
),

teacher as (
    select distinct on (instance_id)
        instance_id,
        n_predicted,
        sum_logp,
        mean_logp
    from score_rows
    where model_fp = (select teacher_fp from current_run) and variant = (select variant from current_run)
),

reference as (
    select distinct on (instance_id)
        instance_id,
        sum_logp,
        mean_logp
    from score_rows
    where model_fp = (select reference_fp from current_run) and variant = (select variant from current_run)
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
        reference.sum_logp as ref_sum_logp,
        candidates.source
    from candidates
    left join teacher using (instance_id)
    left join reference using (instance_id)
)

select * from final;
