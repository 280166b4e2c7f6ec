-- How many documents, instances and quarantined rows the live corpus holds.
select
    (select count(*) from documents) as documents,
    (select count(*) from instance_index) as instances,
    (select count(*) from quarantine) as quarantined;
