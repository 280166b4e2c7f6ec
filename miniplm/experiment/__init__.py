"""The experiment that judges the selection: its arms (Difference Sampling, uniform, full pool, teacher
perplexity and the checks), the students' runs, the report with its verdict, and the presets (the demo, smoke).

May import every stage (`miniplm.training` and below), `miniplm.config` and `miniplm.progress`; only
`miniplm.pipeline_steps` and the top-level package stand above it."""
