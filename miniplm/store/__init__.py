"""The work directory underneath every stage: content hashing, Parquet shards and their schemas, the work
directory's folders, its lock and run manifest, the DuckDB catalog with its views, and resolving model checkpoints.

Owns what is on disk and how it is named. May import `miniplm.config` and `miniplm.progress` only: every stage above
stands on it, and it knows nothing of them."""
