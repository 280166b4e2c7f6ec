-- How much the score depends on the reference: the chosen reference's selection ($members_path) against the other
-- reference size's ($alt_members_path), as the share of instances both keep, and the rank correlation (Spearman)
-- of the two scores over the candidates both reference sizes scored.
with alternative as (
    select
        instance_id,
        mean_logp
    from scores
    where model_fp = $alt_fp and variant = $variant
),

both_scores as (
    select
        scored.score,
        scored.teacher_logp - alternative.mean_logp as alt_score
    from scored
    inner join alternative using (instance_id)
    where isfinite(scored.score) and isfinite(scored.teacher_logp - alternative.mean_logp)
),

ranked as (
    -- tied scores share their average rank, as Spearman's coefficient takes them
    select
        rank() over (order by score) + (count(*) over (partition by score) - 1) / 2 as score_rank,
        rank() over (order by alt_score) + (count(*) over (partition by alt_score) - 1) / 2 as alt_rank
    from both_scores
),

chosen as (
    select instance_id from read_parquet($members_path)
),

other as (
    select instance_id from read_parquet($alt_members_path)
)

select
    (select count(*) from chosen) as kept,
    (select count(*) from other) as alt_kept,
    (select count(*) from chosen inner join other using (instance_id)) as kept_by_both,
    (select count(*) from ranked) as candidates,
    (select corr(score_rank, alt_rank) from ranked) as spearman;
