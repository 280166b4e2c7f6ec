-- Size, tokens and lowest score of a written member list.
select
    count(*) as n_selected,
    coalesce(sum(n_tokens), 0) as selected_tokens,
    min(score) as threshold
from read_parquet($path);
