-- Characters of text in the pool's documents (the candidates'): how much a tokenizer could be fitted on.
select sum(n_chars) as characters
from documents
where split = 'pool';
