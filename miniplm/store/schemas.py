"""The columns of every kind of shard in a work directory (the views in sql/views/ read them).

Keys that a shard's folder already names (`source_key=...`, `model_fp=...`) are not repeated inside it.
"""

from __future__ import annotations

import pyarrow as pa

DOCUMENT = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("n_chars", pa.int64()),
        ("truncated", pa.bool_()),
    ]
)
QUARANTINE = pa.schema([("source", pa.string()), ("row", pa.int64()), ("reason", pa.string()), ("raw", pa.string())])
INSTANCE = pa.schema(
    [
        ("instance_id", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("n_tokens", pa.int32()),
        ("token_ids", pa.list_(pa.int32())),
    ]
)
SPLIT = pa.schema([("doc_id", pa.string()), ("split", pa.string())])
SCORE = pa.schema(
    [
        ("instance_id", pa.string()),
        ("n_predicted", pa.int32()),
        ("sum_logp", pa.float64()),
        ("mean_logp", pa.float64()),
    ]
)
SELECTION = pa.schema(
    [
        ("selection_id", pa.string()),
        ("method", pa.string()),
        ("alpha", pa.float64()),
        ("budget_tokens", pa.int64()),
        ("teacher", pa.string()),
        ("teacher_fp", pa.string()),
        ("reference", pa.string()),
        ("reference_fp", pa.string()),
        ("n_candidates", pa.int64()),
        ("n_selected", pa.int64()),
        ("n_nonfinite", pa.int64()),
        ("n_unscored", pa.int64()),
        ("threshold", pa.float64()),
        ("selected_tokens", pa.int64()),
        ("strata", pa.string()),
        ("temperature", pa.float64()),
        ("seed", pa.int64()),
        ("created_at", pa.timestamp("us")),
    ]
)
MEMBER = pa.schema(
    [("selection_id", pa.string()), ("instance_id", pa.string()), ("score", pa.float64()), ("n_tokens", pa.int32())]
)
# The catalog's three small tables: what its views read of one run (see store/catalog.py).
CURRENT_RUN = pa.schema(
    [
        ("instance_spec", pa.string()),
        ("split_key", pa.string()),
        ("teacher_fp", pa.string()),
        ("reference_fp", pa.string()),
        ("variant", pa.string()),
        ("selection_id", pa.string()),
    ]
)
SOURCES = pa.schema([("source_order", pa.int32()), ("source", pa.string()), ("source_key", pa.string())])
MODELS = pa.schema([("model_fp", pa.string()), ("role", pa.string()), ("spec", pa.string()), ("path", pa.string())])
