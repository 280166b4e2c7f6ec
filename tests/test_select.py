import math

import numpy as np
import pyarrow as pa
import pytest

from miniplm.config import SelectConfig, SplitConfig
from miniplm.data.splits import split_key
from miniplm.selection.select import run_selection
from miniplm.store import schemas
from miniplm.store.catalog import connect
from miniplm.store.manifest import ModelRef, RunManifest, SourceRef
from miniplm.store.shards import write_parquet
from miniplm.store.workdir import Workdir

SPEC, SOURCE = "spec0", "source0"


VARIANT = "float32-s3"


def build_scored_workdir(tmp_path, teacher: list[float], reference: list[float], splits: list[str]) -> tuple:
    """A work directory with one source, one instance per document, and the given mean log-probs."""
    wd = Workdir.create(tmp_path / "wd")
    n = len(teacher)
    ids = [f"{i:04d}" for i in range(n)]
    docs = [f"d{i:04d}" for i in range(n)]
    split_cfg = SplitConfig()
    documents = {
        "doc_id": docs,
        "text": [f"text {i}" for i in range(n)],
        "source": ["s"] * n,
        "row": list(range(n)),
        "n_chars": [6] * n,
        "truncated": [False] * n,
    }
    write_parquet(pa.table(documents, schema=schemas.DOCUMENT), wd.documents(SOURCE, 0))
    instances = {
        "instance_id": ids,
        "doc_id": docs,
        "chunk_index": [0] * n,
        "n_tokens": [10 + i % 7 for i in range(n)],
        "token_ids": [[1, 2]] * n,
    }
    write_parquet(pa.table(instances, schema=schemas.INSTANCE), wd.instances(SPEC, SOURCE, 0))
    key = split_key(split_cfg)
    write_parquet(pa.table({"doc_id": docs, "split": splits}, schema=schemas.SPLIT), wd.splits(key, SOURCE, 0))
    for fp, values in (("T", teacher), ("R", reference)):
        scores = {"instance_id": ids, "n_predicted": [9] * n, "sum_logp": [v * 9 for v in values], "mean_logp": values}
        write_parquet(
            pa.table(scores, schema=schemas.SCORE), wd.partition_scores_dir(fp, VARIANT, SOURCE, 0) / "a.parquet"
        )
    manifest = RunManifest(
        sources=[SourceRef(spec="s", source_key=SOURCE, parts=1)],
        instance_spec=SPEC,
        split=split_cfg,
        split_key=key,
        teacher=ModelRef(spec="t", path="t", fingerprint="T"),
        reference=ModelRef(spec="r", path="r", fingerprint="R"),
        score_variant=VARIANT,
    )
    return wd, manifest, ids


@pytest.mark.parametrize("alpha", [0.5, 0.1, 0.37, 1.0])
def test_selection_matches_a_plain_sort(tmp_path, alpha):
    rng = np.random.default_rng(0)
    n = 400
    teacher = rng.normal(-3, 1, n).round(2).tolist()  # rounding makes ties that instance_id must break
    reference = rng.normal(-4, 1, n).round(2).tolist()
    teacher[5], teacher[6], reference[7], teacher[8] = math.nan, math.inf, -math.inf, -math.inf
    splits = ["reference" if i % 10 == 0 else "heldout" if i % 10 == 1 else "pool" for i in range(n)]
    wd, manifest, ids = build_scored_workdir(tmp_path, teacher, reference, splits)
    record = run_selection(wd, manifest, SelectConfig(alpha=alpha))

    scores = {i: t - r for i, t, r, s in zip(ids, teacher, reference, splits, strict=True) if s == "pool"}
    finite = {i: s for i, s in scores.items() if math.isfinite(s)}
    expected = sorted(finite, key=lambda i: (-finite[i], i))[: math.floor(alpha * len(finite))]
    con = connect(wd, manifest.model_copy(update={"selection_id": record["selection_id"]}))
    got = con.sql("select instance_id, rank, score from selected order by rank").fetchall()
    assert [g[0] for g in got] == expected
    assert [g[1] for g in got] == list(range(1, len(expected) + 1))
    assert record["n_selected"] == len(expected)
    assert record["n_nonfinite"] == len(scores) - len(finite) == 4
    assert record["n_candidates"] == len(scores)
    assert record["threshold"] == pytest.approx(min(finite[i] for i in expected))
    assert not set(expected) & {i for i, s in zip(ids, splits, strict=True) if s != "pool"}
    # the record is in the selections view, with its parameters and fingerprints
    row = con.sql("select alpha, teacher_fp, reference_fp, n_selected from selections").fetchall()
    assert row == [(alpha, "T", "R", len(expected))]


def test_repeating_a_selection_records_it_once(tmp_path):
    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0, -2.0, -3.0, -4.0], [-2.0] * 4, ["pool"] * 4)
    first = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    second = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    assert first["selection_id"] == second["selection_id"]
    assert first["created_at"] == second["created_at"]
    other = run_selection(wd, manifest, SelectConfig(alpha=0.75))
    assert other["selection_id"] != first["selection_id"] and other["n_selected"] == 3
    assert connect(wd, manifest).sql("select count(*) from selections").fetchall() == [(2,)]


def test_token_budget_keeps_the_best_that_fit(tmp_path):
    teacher = [-1.0, -1.5, -2.0, -2.5, -3.0]
    wd, manifest, ids = build_scored_workdir(tmp_path, teacher, [-3.0] * 5, ["pool"] * 5)
    record = run_selection(wd, manifest, SelectConfig(budget_tokens=32))  # n_tokens are 10, 11, 12, 13, 14
    assert record["method"] == "token_budget"
    assert record["n_selected"] == 2 and record["selected_tokens"] == 21
