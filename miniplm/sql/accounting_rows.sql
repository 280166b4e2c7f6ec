-- Where every input document went (the accounting view), for the selection report.
select *
from accounting;
