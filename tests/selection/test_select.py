import hashlib
import math

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from miniplm.config import SelectConfig
from miniplm.selection.select import run_selection, selection_id
from miniplm.store.catalog import connect
from miniplm.store.hashing import stable_hash
from miniplm.store.shards import write_parquet
from tests.workdirs import SOURCE, SPEC, VARIANT, build_scored_workdir


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
    con = connect(wd, manifest.model_copy(update={"selection_id": record.selection_id}))
    got = con.sql("select instance_id, rank, score from selected order by rank").fetchall()
    assert [g[0] for g in got] == expected
    assert [g[1] for g in got] == list(range(1, len(expected) + 1))
    assert record.n_selected == len(expected)
    assert record.n_nonfinite == len(scores) - len(finite) == 4
    assert record.n_candidates == len(scores)
    assert record.threshold == pytest.approx(min(finite[i] for i in expected))
    assert not set(expected) & {i for i, s in zip(ids, splits, strict=True) if s != "pool"}
    # the record is in the selections view, with its parameters and fingerprints
    row = con.sql("select alpha, teacher_fp, reference_fp, n_selected from selections").fetchall()
    assert row == [(alpha, "T", "R", len(expected))]


def test_repeating_a_selection_records_it_once(tmp_path):
    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0, -2.0, -3.0, -4.0], [-2.0] * 4, ["pool"] * 4)
    first = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    second = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    assert first.selection_id == second.selection_id
    assert first.created_at == second.created_at
    other = run_selection(wd, manifest, SelectConfig(alpha=0.75))
    assert other.selection_id != first.selection_id and other.n_selected == 3
    assert connect(wd, manifest).sql("select count(*) from selections").fetchall() == [(2,)]


def test_token_budget_keeps_the_best_that_fit(tmp_path):
    teacher = [-1.0, -1.5, -2.0, -2.5, -3.0]
    wd, manifest, ids = build_scored_workdir(tmp_path, teacher, [-3.0] * 5, ["pool"] * 5)
    record = run_selection(wd, manifest, SelectConfig(budget_tokens=32))  # n_tokens are 10, 11, 12, 13, 14
    assert record.method == "token_budget"
    assert record.n_selected == 2 and record.selected_tokens == 21


def scores_by_source(tmp_path, n: int = 600) -> tuple:
    """Three sources whose scores differ in level (so a global ranking keeps them unevenly), with ties and non-finite
    scores, and a tenth of the documents outside the pool."""
    rng = np.random.default_rng(1)
    sources = [("code", "prose", "html")[i % 3] for i in range(n)]
    shift = {"code": 1.0, "prose": 0.0, "html": -1.5}
    teacher = [round(float(rng.normal(-3 + shift[src], 1)), 2) for src in sources]
    reference = rng.normal(-4, 1, n).round(2).tolist()
    teacher[3], reference[4] = math.nan, math.inf
    splits = ["reference" if i % 10 == 0 else "pool" for i in range(n)]
    wd, manifest, ids = build_scored_workdir(tmp_path, teacher, reference, splits, sources)
    finite = {
        i: (t - r, src)
        for i, t, r, sp, src in zip(ids, teacher, reference, splits, sources, strict=True)
        if sp == "pool" and math.isfinite(t - r)
    }
    return wd, manifest, finite


def members(wd, manifest, record) -> list[str]:
    con = connect(wd, manifest.model_copy(update={"selection_id": record.selection_id}))
    return [r[0] for r in con.sql("select instance_id from selected order by rank").fetchall()]


def gumbel_key(instance_id: str, score: float, temperature: float, seed: int) -> float:
    """The Gumbel top-k key recomputed in plain Python: score / T + Gumbel noise from splitmix64's finalizer of the
    instance id's first 64 bits xor the seed's md5."""
    seed_bits = int.from_bytes(hashlib.md5(f":gumbel:{seed}".encode()).digest()[:8], "little")
    z = int(instance_id[:16], 16) ^ seed_bits
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = ((z ^ (z >> shift)) * multiplier) % 2**64
    z ^= z >> 31
    u = ((z >> 11) + 0.5) / 2**53
    return score / temperature - math.log(-math.log(u))


@pytest.mark.parametrize("alpha", [0.5, 0.13, 1.0])
def test_strata_keep_the_top_alpha_of_each_source(tmp_path, alpha):
    wd, manifest, finite = scores_by_source(tmp_path)
    record = run_selection(wd, manifest, SelectConfig(alpha=alpha, strata="source"))
    expected = []
    for source in ("code", "prose", "html"):
        mine = sorted((i for i, (_, src) in finite.items() if src == source), key=lambda i: (-finite[i][0], i))
        expected += mine[: math.floor(alpha * len(mine))]
    got = members(wd, manifest, record)
    assert sorted(got) == sorted(expected) and len(got) == len(set(got))
    assert record.n_selected == len(expected) and record.strata == "source" and record.temperature is None
    assert record.n_nonfinite == 2
    if alpha < 1:  # the paper's global ranking keeps the sources unevenly; the strata keep each its share
        paper = members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=alpha)))
        share = {src: sum(finite[i][1] == src for i in paper) / len(paper) for src in ("code", "html")}
        assert share["code"] > 0.45 and share["html"] < 0.2


def test_the_scored_view_names_each_candidates_input_the_first_listed_that_holds_it(tmp_path):
    """A document in two inputs belongs to the first listed (as in the documents view), here the one whose key sorts
    last, so neither the shard's name nor the input's key decides."""
    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0] * 4, [-2.0] * 4, ["pool"] * 4, ["y", "y", "x", "x"])
    key = manifest.split_key
    for shard, copy in (
        (wd.documents("key-x", 0), wd.documents("key-y", 1)),
        (wd.instances(SPEC, "key-x", 0), wd.instances(SPEC, "key-y", 1)),
        (wd.splits(key, "key-x", 0), wd.splits(key, "key-y", 1)),
    ):
        table = pq.read_table(shard)
        write_parquet(table.filter(pc.equal(table["doc_id"], "d0002")), copy)
    con = connect(wd, manifest)
    assert con.sql("select instance_id, source from scored order by instance_id").fetchall() == [
        ("0000", "y"), ("0001", "y"), ("0002", "y"), ("0003", "x")
    ]  # fmt: skip
    first = con.sql("select sources.source from documents join sources using (source_key) where doc_id = 'd0002'")
    assert first.fetchall() == [("y",)]


def test_a_source_is_an_input_as_listed_not_each_file_of_it(tmp_path):
    """A folder of files is one source: with one input, the strata keep what the paper's ranking keeps, whichever
    files its documents came from."""
    n = 60
    files = ["a.jsonl" if i % 3 else "b.jsonl" for i in range(n)]
    noise = np.random.default_rng(2).normal(-3, 1, n).round(2)
    teacher = [float(t) + (2.0 if f == "b.jsonl" else 0.0) for t, f in zip(noise, files, strict=True)]
    wd, manifest, _ = build_scored_workdir(tmp_path, teacher, [-4.0] * n, ["pool"] * n, files=files)
    paper = members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=0.3)))
    strata = members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=0.3, strata="source")))
    assert sorted(strata) == sorted(paper)
    # per file it would not be: b.jsonl holds a third of the documents and most of the best
    assert sum(files[int(i)] == "b.jsonl" for i in paper) > len(paper) / 2


@pytest.mark.parametrize("strata", ["none", "source"])
def test_temperature_draws_the_gumbel_top_k_recomputed_in_python(tmp_path, strata):
    wd, manifest, finite = scores_by_source(tmp_path)
    alpha, temperature, seed = 0.3, 0.7, 5
    record = run_selection(wd, manifest, SelectConfig(alpha=alpha, strata=strata, temperature=temperature, seed=seed))
    groups = {src for _, src in finite.values()} if strata == "source" else {None}
    expected = []
    for group in groups:
        mine = [i for i, (_, src) in finite.items() if group in (None, src)]
        keys = {i: gumbel_key(i, finite[i][0], temperature, seed) for i in mine}
        expected += sorted(mine, key=lambda i: (-keys[i], i))[: math.floor(alpha * len(mine))]
    got = members(wd, manifest, record)
    assert sorted(got) == sorted(expected)
    assert (record.temperature, record.seed, record.strata) == (temperature, seed, strata)
    # not the best alone: a draw reaches below the paper's threshold
    paper = set(members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=alpha, strata=strata))))
    assert set(got) != paper and len(got) == len(paper)


def test_a_draw_depends_on_its_seed_and_instances_only_and_a_small_temperature_is_the_best(tmp_path):
    wd, manifest, finite = scores_by_source(tmp_path)
    cfg = SelectConfig(alpha=0.4, temperature=1.0, seed=3)
    first = members(wd, manifest, run_selection(wd, manifest, cfg))
    # the same candidates written in another row order: the same draw
    other = tmp_path / "shuffled"
    other.mkdir()
    wd2, manifest2, _ = scores_by_source(other)
    for shard in wd2.root.rglob("*.parquet"):
        table = pq.read_table(shard)
        if table.num_rows > 1:
            order = np.random.default_rng(7).permutation(table.num_rows)
            pq.write_table(table.take(order), shard)
    assert sorted(members(wd2, manifest2, run_selection(wd2, manifest2, cfg))) == sorted(first)
    reseeded = members(wd, manifest, run_selection(wd, manifest, cfg.model_copy(update={"seed": 4})))
    assert sorted(reseeded) != sorted(first)
    cold = members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=0.4, temperature=1e-6)))
    best = members(wd, manifest, run_selection(wd, manifest, SelectConfig(alpha=0.4)))
    assert sorted(cold) == sorted(best)


def test_a_mode_is_a_selection_of_its_own_and_the_papers_ids_are_unchanged(tmp_path):
    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0, -2.0, -3.0, -4.0], [-2.0] * 4, ["pool"] * 4)
    paper = SelectConfig(alpha=0.5)
    # the id the paper's selection had before the modes existed: the same hash of the same fields
    before = stable_hash(
        "selection-v2",
        {"alpha": 0.5, "budget_tokens": None},
        "T",
        "R",
        VARIANT,
        SPEC,
        manifest.split_key,
        [SOURCE],
    )[:16]
    assert selection_id(manifest, paper) == before
    ids = {
        selection_id(manifest, cfg)
        for cfg in (
            paper,
            SelectConfig(alpha=0.5, strata="source"),
            SelectConfig(alpha=0.5, temperature=1.0),
            SelectConfig(alpha=0.5, temperature=1.0, seed=1),
            SelectConfig(alpha=0.5, temperature=2.0),
            SelectConfig(alpha=0.5, strata="source", temperature=1.0),
        )
    }
    assert len(ids) == 6
    assert selection_id(manifest, SelectConfig(alpha=0.5, seed=9)) == before  # a seed without a draw changes nothing


def test_a_token_budget_within_strata_shares_it_by_the_sources_tokens(tmp_path):
    wd, manifest, finite = scores_by_source(tmp_path)
    con = connect(wd, manifest)
    tokens = dict(con.sql("select instance_id, n_tokens from scored").fetchall())
    budget = 1500
    record = run_selection(wd, manifest, SelectConfig(budget_tokens=budget, strata="source"))
    total = sum(tokens[i] for i in finite)
    expected = []
    for source in ("code", "prose", "html"):
        mine = sorted((i for i, (_, src) in finite.items() if src == source), key=lambda i: (-finite[i][0], i))
        share = math.floor(budget * sum(tokens[i] for i in mine) / total)
        used = 0
        for i in mine:
            if used + tokens[i] > share:
                break
            used += tokens[i]
            expected.append(i)
    assert sorted(members(wd, manifest, record)) == sorted(expected)
    assert record.method == "token_budget" and record.selected_tokens <= budget


def test_a_selection_record_hashes_in_a_tasks_cache_key_as_the_plain_dict_it_was(tmp_path):
    """The record became a typed model; the tasks that take it (train-students, arm-data, summary) key their cache
    on it, so it must hash as the dict it replaced (time as str() renders it), fresh and read back."""
    from tasks.caching import _plain

    wd, manifest, _ = build_scored_workdir(tmp_path, [-1.0, -2.0, -3.0, -4.0], [-2.0] * 4, ["pool"] * 4)
    fresh = run_selection(wd, manifest, SelectConfig(alpha=0.5))
    again = run_selection(wd, manifest, SelectConfig(alpha=0.5))  # read back from its Parquet record
    as_dict = pq.read_table(wd.selection(fresh.selection_id)).to_pylist()[0]
    assert stable_hash(_plain(fresh)) == stable_hash(_plain(again)) == stable_hash(as_dict)


def test_the_selection_record_has_the_columns_of_its_parquet_record():
    """The record is written with schemas.SELECTION (the store cannot import the selection stage): one list, twice."""
    from miniplm.selection.select import SelectionRecord
    from miniplm.store import schemas

    assert list(SelectionRecord.model_fields) == schemas.SELECTION.names
