-- How many members one selection has.
select count(*)
from selection_members
where selection_id = $id;
