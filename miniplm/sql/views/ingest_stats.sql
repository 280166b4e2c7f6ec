-- What ingest counted per live source (written last by ingest: only finished sources have it).
create or replace view ingest_stats as
select *
from read_json(
    'documents/*/_stats.json',
    columns = {
        source: 'varchar',
        source_key: 'varchar',
        rows_read: 'bigint',
        written: 'bigint',
        duplicates_in_shard: 'bigint',
        quarantined: 'bigint',
        truncated: 'bigint',
        parts: 'bigint'
    }
)
where source_key in (select source_key from sources);
