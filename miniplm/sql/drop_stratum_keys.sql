-- A mode selection's per-candidate keys, dropped once its members are written (the connection lives on).
drop table stratum_keys;
