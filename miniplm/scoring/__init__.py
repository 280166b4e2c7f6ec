"""Scoring instances with the teacher and the reference LM (the pipeline's scoring steps): token batches and
variable-length packing, device and dtype choice, the scorer itself, partitions with their checkpoints, and the
precision check of the scores.

May import `miniplm.data`, `miniplm.store`, `miniplm.config` and `miniplm.progress`."""
