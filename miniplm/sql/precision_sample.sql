-- A seeded sample of the pool's candidates to measure a reduced scoring precision on: at most $instances of them,
-- holding at most about $tokens tokens, in a stable order.
with ordered as (
    select
        instances.token_ids,
        instances.n_tokens,
        row_number() over (order by hash(instances.instance_id || ':precision'), instances.instance_id) as n,
        sum(instances.n_tokens) over (
            order by hash(instances.instance_id || ':precision'), instances.instance_id rows unbounded preceding
        ) as tokens_so_far
    from instances
    where instances.split = 'pool'
)

select token_ids
from ordered
where n <= $instances and (tokens_so_far <= $tokens or n = 1)
order by n;
