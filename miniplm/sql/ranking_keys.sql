-- The key each candidate (finite score) is ranked by in a selection beyond the paper's, and the stratum it is ranked
-- within. With a temperature T the key is score / T plus Gumbel noise, so the top k keys are k draws without
-- replacement with probability proportional to exp(score / T) (Gumbel top-k); the noise's uniform variate is the
-- top 53 bits of md5(instance_id, seed), so a draw depends on the seed and the instances, never on row order.
-- Without a temperature the key is the score itself. The stratum is the candidate's source, or one for all.
create or replace temp macro ranking_keys(temperature, seed, by_source) as table
with candidates as (
    select
        instance_id,
        doc_id,
        score,
        n_tokens
    from scored
    where isfinite(score)
),

keyed as (
    select
        instance_id,
        doc_id,
        score,
        n_tokens,
        case
            when temperature is null then score
            else score / temperature - ln(-ln(
                ((md5_number_upper(instance_id || ':gumbel:' || seed) >> 11)::double + 0.5) / 9007199254740992.0
            ))
        end as key
    from candidates
),

one_stratum as (
    select
        instance_id,
        score,
        n_tokens,
        key,
        '' as stratum
    from keyed
    where not by_source
),

by_source as (
    select
        keyed.instance_id,
        keyed.score,
        keyed.n_tokens,
        keyed.key,
        documents.source as stratum
    from keyed
    inner join documents using (doc_id)
    where by_source
),

final as (
    select * from one_stratum
    union all
    select * from by_source
)

select * from final;
