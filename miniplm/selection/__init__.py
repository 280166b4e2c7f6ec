"""Difference Sampling's choice and what it hands on: the DuckDB query that ranks by the log-probability
difference and keeps the top fraction (and the other samplers of the experiment's arms), the read-only scored corpus
(`miniplm.open`), the selection report, the kept instances' text and tokens, and the export to a trainer's formats.

May import `miniplm.scoring`, `miniplm.data`, `miniplm.store`, `miniplm.config` and `miniplm.progress`."""
