-- The key each candidate (finite score) is ranked by in a selection beyond the paper's, and the stratum it is ranked
-- within. With a temperature T the key is score / T plus Gumbel noise, so the top k keys are k draws without
-- replacement with probability proportional to exp(score / T) (Gumbel top-k). The noise's uniform variate is the top
-- 53 bits of splitmix64(the instance id's first 64 bits xor the seed's md5): a draw depends on the seed and the
-- instances, never on row order. The instance id is already a hash (hex); splitmix64's finalizer spreads a seed's
-- change over every bit at a sixth of the cost of an md5 a row (100M rows). Without a temperature the key is the score
-- itself. The stratum is the candidate's source (the input it came from, as listed: the scored view carries it, so no
-- join to the documents is needed), numbered by the run's list of sources, or one for all.
create or replace temp macro wrapping_mul64(a, b) as ((a::uhugeint * b::uhugeint) & 18446744073709551615::uhugeint)::ubigint;

create or replace temp macro xorshift(z, shift) as xor(z, z >> shift);

create or replace temp macro splitmix64(z) as xorshift(
    wrapping_mul64(xorshift(wrapping_mul64(xorshift(z, 30), 13787848793156543929), 27), 10723151780598845931), 31
);

create or replace temp macro ranking_keys(temperature, seed, by_source) as table
with keyed as (
    select
        instance_id,
        score,
        n_tokens,
        source,
        case
            when temperature is null then score
            else score / temperature - ln(-ln(
                ((splitmix64(xor(
                    ('0x' || left(instance_id, 16))::ubigint, md5_number_upper(':gumbel:' || seed)
                )) >> 11)::double + 0.5) / 9007199254740992.0
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
        0::uinteger as stratum
    from keyed
    where not by_source
),

by_source as (
    -- the source's place in the run's list, not its name: 100M (stratum, key) rows then fit the memory limit
    select
        keyed.instance_id,
        keyed.score,
        keyed.n_tokens,
        keyed.key,
        sources.source_order::uinteger as stratum
    from keyed
    inner join sources using (source)
    where by_source
),

final as (
    select * from one_stratum
    union all
    select * from by_source
)

select * from final;
