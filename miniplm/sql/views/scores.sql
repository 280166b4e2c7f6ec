-- Every score ever computed here: one row per (model, variant, instance), whatever was written twice.
create or replace view scores as
with deduplicated as (
    select distinct on (model_fp, variant, instance_id) * from score_rows
),

final as (
    select
        deduplicated.model_fp,
        models.role,
        models.spec,
        deduplicated.variant,
        deduplicated.instance_id,
        deduplicated.n_predicted,
        deduplicated.sum_logp,
        deduplicated.mean_logp
    from deduplicated
    left join models using (model_fp)
)

select * from final;
