-- What a work directory holds, in counts (`miniplm status`).
select
    (select count(*) from documents) as documents,
    (select count(*) from instance_index) as instances,
    (select count(*) from quarantine) as quarantined,
    (select count(*) from scored) as candidates,
    (select count(teacher_logp) from scored) as scored_teacher,
    (select count(ref_logp) from scored) as scored_reference,
    (select count(*) from selected) as selected;
