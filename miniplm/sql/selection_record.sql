-- One selection's record (the selections view's row), by its id.
select *
from selections
where selection_id = $id;
