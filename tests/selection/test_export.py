"""`miniplm export`: each format read back by the library a trainer reads it with, checked against the `selected`
view; a shuffled order, a trainer's own tokenizer, and an export that never publishes half a result."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pytest

import miniplm
from flows.pipeline import miniplm_pipeline
from miniplm.config import ExportConfig, PipelineConfig
from miniplm.selection.export import ExportError, export_selection
from miniplm.selection.export_formats import TEXT_SCHEMA, HfDataset, JsonlShards, ParquetShards
from miniplm.selection.export_header import ExportHeader
from miniplm.store.catalog import open_readonly
from miniplm.store.models import load_tokenizer
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl
from tests.workdirs import pipeline_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory, models, prefect_harness):
    tmp = tmp_path_factory.mktemp("export")
    texts = corpus_texts(90, seed=5)
    paths = [write_jsonl(tmp / "a.jsonl", texts[:60]), write_jsonl(tmp / "b.jsonl", texts[60:])]
    cfg = without_students(pipeline_config(tmp, models, paths))
    return Path(cfg.workdir), miniplm_pipeline(cfg), tmp


def without_students(cfg, **export):
    """No students (what is tested here is what is kept); an export at the end where given."""
    return cfg.model_copy(update={"student": cfg.student.model_copy(update={"enabled": False}),
                                  "export": ExportConfig(**export)})  # fmt: skip


def selected(workdir: Path) -> pl.DataFrame:
    """The `selected` view beside each instance's teacher tokens and source: what every export must hold."""
    con = open_readonly(Workdir.open(workdir))
    return con.sql(
        "select selected.rank, selected.instance_id, selected.score, instances.token_ids, documents.source "
        "from selected join instances using (instance_id) join documents on documents.doc_id = instances.doc_id "
        "order by rank"
    ).pl()


def miniplm_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "export", *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_parquet_holds_the_selection_best_first_with_its_text(run, models):
    workdir, summary, tmp = run
    header = export_selection(workdir, tmp / "parquet", "parquet", shard_rows=10)
    expected = selected(workdir)
    assert len(expected) == summary.selected > 10
    got = pl.read_parquet(tmp / "parquet" / "*.parquet").sort("rank")
    assert len(header.files) == -(-len(expected) // 10)  # shards of 10 rows
    assert got["instance_id"].to_list() == expected["instance_id"].to_list()
    assert got["rank"].to_list() == list(range(1, len(expected) + 1))
    assert got["source"].to_list() == expected["source"].to_list()
    assert got["score"].to_list() == pytest.approx(expected["score"].to_list())
    teacher = load_tokenizer(str(models["teacher"]))
    eos = teacher.eos_token_id
    for text, ids, ends in zip(got["text"], expected["token_ids"], got["ends_document"], strict=True):
        assert ends == (ids[-1] == eos)
        assert text == teacher.decode(ids[:-1] if ends else ids, skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)  # fmt: skip
    on_disk = json.loads((tmp / "parquet" / "export.json").read_text())
    assert on_disk["instances"] == len(expected) and on_disk["order"] == "rank"
    assert on_disk["selection"]["selection_id"] == summary.selection_id
    assert on_disk["teacher_tokens"] == sum(len(ids) for ids in expected["token_ids"])
    # export.json keeps its keys and its ISO times, and reads back as the header the export returned
    assert sorted(on_disk) == sorted(
        ["format", "files", "instances", "teacher_tokens", "text_bytes", "order", "shuffle_seed", "columns", "tokens",
         "selection", "workdir", "workdir_id", "teacher", "reference", "miniplm_version", "created_at", "seconds"]
    )  # fmt: skip
    assert datetime.fromisoformat(on_disk["selection"]["created_at"]) == header.selection.created_at
    assert "T" in on_disk["selection"]["created_at"]
    assert ExportHeader.model_validate(on_disk | {"path": header.path}) == header


def test_jsonl_and_hf_hold_the_same_rows(run):
    workdir, _, tmp = run
    export_selection(workdir, tmp / "jsonl", "jsonl", shard_rows=7)
    export_selection(workdir, tmp / "hf", "hf")
    expected = selected(workdir)
    from_jsonl = pl.read_ndjson(sorted((tmp / "jsonl").glob("part-*.jsonl")))
    assert len(list((tmp / "jsonl").glob("part-*.jsonl"))) == -(-len(expected) // 7)
    hf = datasets.load_from_disk(str(tmp / "hf"))
    assert hf.num_rows == len(expected)
    assert from_jsonl["instance_id"].to_list() == hf["instance_id"] == expected["instance_id"].to_list()
    assert from_jsonl["text"].to_list() == hf["text"] and all(hf["text"])
    assert hf.column_names == from_jsonl.columns


def test_tokens_in_a_trainers_tokenizer_match_a_retokenization(run, models):
    workdir, _, tmp = run
    header = export_selection(workdir, tmp / "tokens", "tokens", tokenizer=str(models["other_tokenizer"]))
    text = export_selection(workdir, tmp / "text-for-tokens", "parquet")
    rows = pl.read_parquet(tmp / "text-for-tokens" / "*.parquet").sort("rank")
    other = load_tokenizer(str(models["other_tokenizer"]))
    assert header.tokens.dtype == "uint16" and header.tokens.vocab_size == len(other)
    tokens = np.memmap(tmp / "tokens" / "tokens.bin", dtype=np.uint16, mode="r")
    index = np.load(tmp / "tokens" / "tokens.idx.npy")
    assert len(index) == text.instances + 1 and index[-1] == len(tokens) == header.tokens.count
    on_disk = json.loads((tmp / "tokens" / "export.json").read_text())["tokens"]
    assert on_disk["count"] == header.tokens.count and not {"documents", "split", "block_size"} & set(on_disk)
    for i, (t, ends) in enumerate(zip(rows["text"], rows["ends_document"], strict=True)):
        want = other(t, add_special_tokens=False)["input_ids"] + ([other.eos_token_id] if ends else [])
        assert tokens[index[i] : index[i + 1]].tolist() == want


def test_tokens_by_default_are_the_teachers_ids_as_scored(run):
    workdir, _, tmp = run
    header = export_selection(workdir, tmp / "teacher-tokens", "tokens")
    tokens = np.memmap(tmp / "teacher-tokens" / "tokens.bin", dtype=header.tokens.dtype, mode="r")
    index = np.load(tmp / "teacher-tokens" / "tokens.idx.npy")
    expected = selected(workdir)["token_ids"].to_list()
    assert [tokens[index[i] : index[i + 1]].tolist() for i in range(len(expected))] == expected


def by_document(rows: pl.DataFrame) -> list[pl.DataFrame]:
    """A text export's rows grouped as the trainers' formats hold them: each document's kept instances in chunk
    order, documents by their best instance's rank."""
    rows = rows.with_columns(pl.col("rank").min().over("doc_id").alias("doc_rank")).sort("doc_rank", "chunk_index")
    return [doc for _, doc in rows.group_by("doc_rank", maintain_order=True)]


def retokenized(tok, doc: pl.DataFrame) -> list[list[int]]:
    """A document's kept instances in `tok`, one to one sequence, the last ended by EOS."""
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in doc["text"]]
    ids[-1] = ids[-1] + [tok.eos_token_id]
    return ids


def test_megatron_core_opens_the_indexed_dataset_with_every_instance_and_document(run, models):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    workdir, _, tmp = run
    header = export_selection(workdir, tmp / "megatron", "megatron", tokenizer=str(models["other_tokenizer"]))
    export_selection(workdir, tmp / "text-for-megatron", "parquet")
    docs = by_document(pl.read_parquet(tmp / "text-for-megatron" / "*.parquet"))
    expected = selected(workdir)
    dataset = IndexedDataset(str(tmp / "megatron" / "data"))
    assert len(dataset) == len(expected) == header.instances
    assert len(dataset.document_indices) - 1 == len(docs) == header.tokens.documents
    assert len(docs) < len(expected)  # some documents hold several kept instances: the grouping is tested
    other = load_tokenizer(str(models["other_tokenizer"]))
    want = [ids for doc in docs for ids in retokenized(other, doc)]
    assert [dataset[i].tolist() for i in range(len(dataset))] == want
    ends = [int(i) for i in dataset.document_indices]
    assert ends == [0, *np.cumsum([len(doc) for doc in docs]).tolist()]
    assert dataset.sequence_lengths.sum() == header.tokens.count and header.tokens.dtype == "uint16"


def test_megatron_by_default_holds_the_teachers_ids_each_document_ended(run, models):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    workdir, _, tmp = run
    export_selection(workdir, tmp / "megatron-teacher", "megatron")
    export_selection(workdir, tmp / "text-for-megatron-teacher", "parquet")
    teacher = load_tokenizer(str(models["teacher"]))
    ids = {r["instance_id"]: r["token_ids"] for r in selected(workdir).iter_rows(named=True)}
    want = []
    for doc in by_document(pl.read_parquet(tmp / "text-for-megatron-teacher" / "*.parquet")):
        seqs = [list(ids[i]) for i in doc["instance_id"]]
        if seqs[-1][-1] != teacher.eos_token_id:  # the document's own last chunk was not kept
            seqs[-1].append(teacher.eos_token_id)
        want.extend(seqs)
    dataset = IndexedDataset(str(tmp / "megatron-teacher" / "data"))
    assert [dataset[i].tolist() for i in range(len(dataset))] == want


def test_nanogpt_bins_hold_every_document_once_split_by_whole_documents(run, models):
    import pickle

    workdir, _, tmp = run
    other = load_tokenizer(str(models["other_tokenizer"]))
    header = export_selection(workdir, tmp / "nanogpt", "nanogpt", tokenizer=str(models["other_tokenizer"]),
                              val_fraction=0.2)  # fmt: skip
    export_selection(workdir, tmp / "text-for-nanogpt", "parquet")
    docs = by_document(pl.read_parquet(tmp / "text-for-nanogpt" / "*.parquet"))
    # as nanoGPT's train.py reads them: flat uint16 memmaps, and meta.pkl's vocab_size
    train = np.memmap(tmp / "nanogpt" / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(tmp / "nanogpt" / "val.bin", dtype=np.uint16, mode="r")
    meta = pickle.loads((tmp / "nanogpt" / "meta.pkl").read_bytes())
    assert meta["vocab_size"] == len(other)
    flat = {id(doc): [t for ids in retokenized(other, doc) for t in ids] for doc in docs}
    got_val = val.tolist()
    in_val, in_train = [], []
    for doc in docs:  # each document lands whole in one split, in the export's order
        (in_val if got_val[: len(flat[id(doc)])] == flat[id(doc)] and got_val else in_train).append(doc)
        if in_val and in_val[-1] is doc:
            got_val = got_val[len(flat[id(doc)]) :]
    assert got_val == [] and in_val and in_train
    assert train.tolist() == [t for doc in in_train for t in flat[id(doc)]]
    n_val = sum(len(doc) for doc in in_val)
    assert header.tokens.split["instances"] == {"train": len(selected(workdir)) - n_val, "val": n_val}
    n_heldout = round(0.2 * header.instances)  # whole documents until the fraction is reached
    assert n_heldout <= n_val < n_heldout + max(len(doc) for doc in in_val)
    assert int((train == other.eos_token_id).sum() + (val == other.eos_token_id).sum()) >= len(docs)


def test_litdata_streams_every_kept_token_back_in_order_once(run, models, monkeypatch):
    from litdata import StreamingDataset, TokensLoader

    from miniplm.selection import trainer_formats

    workdir, _, tmp = run
    monkeypatch.setattr(trainer_formats, "LITDATA_CHUNK_TOKENS", 300)  # several chunks, as a large corpus has
    header = export_selection(workdir, tmp / "litdata", "litdata", tokenizer=str(models["other_tokenizer"]),
                              block_size=64)  # fmt: skip
    export_selection(workdir, tmp / "text-for-litdata", "parquet")
    other = load_tokenizer(str(models["other_tokenizer"]))
    docs = by_document(pl.read_parquet(tmp / "text-for-litdata" / "*.parquet"))
    want = [t for doc in docs for ids in retokenized(other, doc) for t in ids]
    assert header.tokens.count == len(want) and len(list((tmp / "litdata").glob("chunk-*.bin"))) > 2
    for block in (64, 1):  # as litgpt reads it, and token by token
        dataset = StreamingDataset(str(tmp / "litdata"), item_loader=TokensLoader(block_size=block), shuffle=False)
        got = [t for item in dataset for t in item.tolist()]
        assert got == want[: len(want) // block * block]  # every whole block, in order, once


def test_nanogpt_refuses_a_vocabulary_its_uint16_bins_cannot_hold(run, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    workdir, _, tmp = run
    vocab = {f"w{i}": i for i in range(70_000)} | {"<eos>": 70_000}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>").save_pretrained(tmp_path / "wide")
    with pytest.raises(ExportError, match="has 70,001 tokens; pass --tokenizer with a vocabulary of at most 65,536"):
        export_selection(workdir, tmp / "too-wide", "nanogpt", tokenizer=str(tmp_path / "wide"))
    assert not (tmp / "too-wide").exists() and not list(tmp.glob(".too-wide.*"))


def test_a_seeded_shuffle_is_the_same_set_in_a_repeatable_order(run):
    workdir, _, tmp = run
    order = {}
    for name, seed in (("s1", 1), ("s1-again", 1), ("s2", 2)):
        export_selection(workdir, tmp / name, "parquet", shuffle_seed=seed)
        order[name] = pl.read_parquet(tmp / name / "*.parquet")["instance_id"].to_list()
    best_first = selected(workdir)["instance_id"].to_list()
    assert order["s1"] == order["s1-again"] != order["s2"]
    assert order["s1"] != best_first and sorted(order["s1"]) == sorted(best_first)


def test_an_export_in_the_way_is_refused_and_replaced_only_when_asked(run):
    workdir, _, tmp = run
    target = tmp / "in-the-way"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export_selection(workdir, target, "jsonl")
    assert (target / "mine.txt").read_text() == "keep me"
    export_selection(workdir, target, "jsonl", overwrite=True)
    assert not (target / "mine.txt").exists() and (target / "export.json").exists()
    assert not list(tmp.glob(".in-the-way.*"))  # neither the partial folder nor the replaced one is left


def test_a_killed_exports_leftovers_are_cleared_and_never_look_complete(run):
    workdir, _, tmp = run
    left = tmp / ".after-kill.partial-0123456789ab"  # what a killed export leaves: a hidden folder, no export.json
    left.mkdir()
    (left / "part-00000.parquet").write_bytes(b"half")
    export_selection(workdir, tmp / "after-kill", "parquet")
    assert not left.exists() and (tmp / "after-kill" / "export.json").exists()


def test_the_pipeline_exports_at_its_end_when_asked_and_again_only_for_a_new_selection(run, models):
    workdir, first, tmp = run
    paths = [tmp / "a.jsonl", tmp / "b.jsonl"]
    asked = without_students(pipeline_config(tmp, models, paths), path=str(tmp / "from-pipeline"), format="jsonl")
    summary = miniplm_pipeline(asked)
    assert summary.selection_id == first.selection_id and "export" in summary.steps_run
    header = json.loads((tmp / "from-pipeline" / "export.json").read_text())
    assert header["selection"]["selection_id"] == first.selection_id and header["format"] == "jsonl"
    rows = pl.read_ndjson(sorted((tmp / "from-pipeline").glob("part-*.jsonl")))
    assert rows["instance_id"].to_list() == selected(workdir)["instance_id"].to_list()
    again = miniplm_pipeline(asked)
    assert "export" in again.steps_cached and again.export.instances == len(rows)
    to_megatron = without_students(pipeline_config(tmp, models, paths), path=str(tmp / "from-pipeline-megatron"),
                                   format="megatron")  # fmt: skip
    megatron = miniplm_pipeline(to_megatron)
    assert megatron.export.format == "megatron" and megatron.export.instances == len(rows)
    assert {"data.bin", "data.idx", "export.json"} <= {p.name for p in (tmp / "from-pipeline-megatron").iterdir()}
    (tmp / "users-own").mkdir()
    (tmp / "users-own" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not an export of this work directory"):
        miniplm_pipeline(without_students(pipeline_config(tmp, models, paths), path=str(tmp / "users-own")))
    assert (tmp / "users-own" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="inside the work directory"):  # refused before the run, not at its end
        PipelineConfig.model_validate(asked.model_dump() | {"export": {"path": str(workdir / "kept")}})


def test_a_selection_no_longer_in_the_corpus_publishes_nothing(run, models):
    workdir, first, tmp = run
    second = miniplm_pipeline(without_students(pipeline_config(tmp, models, [tmp / "a.jsonl"])))  # source b is gone
    assert second.selection_id != first.selection_id
    with pytest.raises(ExportError, match=r"\(its sources changed since\); nothing was written"):
        export_selection(workdir, tmp / "old", "parquet", selection_id=first.selection_id)
    assert not (tmp / "old").exists() and not list(tmp.glob(".old.*"))
    assert export_selection(workdir, tmp / "new", "parquet").selection.selection_id == second.selection_id


def test_the_cli_writes_an_export_and_names_what_is_wrong(run):
    workdir, _, tmp = run
    ok = miniplm_export("--workdir", str(workdir), "--to", str(tmp / "cli"), "--format", "jsonl", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["instances"] == len(selected(workdir))
    again = miniplm_export("--workdir", str(workdir), "--to", str(tmp / "cli"))  # an error is one line, no traceback
    assert again.returncode == 1 and "already exists; pass --overwrite" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize(
    ("where", "asked", "says"),
    [
        ("x", {"selection_id": "nope"}, "no selection 'nope'"),
        ("inside", {}, "inside the work directory"),
        ("y", {"format": "csv"}, "unknown format 'csv'"),
        ("z", {"format": "tokens", "tokenizer": "MISSING"}, "cannot load a tokenizer"),
        ("w", {"format": "jsonl", "tokenizer": "teacher"}, "applies to the token formats only"),
        ("v", {"format": "nanogpt", "val_fraction": 1.0}, "--val-fraction 1.0: must be at least 0 and below 1"),
    ],
)
def test_what_cannot_be_exported_is_named_and_nothing_is_left(run, where, asked, says):
    workdir, _, tmp = run
    to = workdir / "out" if where == "inside" else tmp / where
    if asked.get("tokenizer") == "MISSING":  # a folder that is not there (a bare name would be looked up on the hub)
        asked = asked | {"tokenizer": str(tmp / "no-such-tokenizer")}
    with pytest.raises(ExportError, match=says):
        export_selection(workdir, to, **({"format": "parquet"} | asked))
    assert not to.exists() and not list(to.parent.glob(f".{to.name}.*"))  # nothing half made


def test_the_python_api_reads_what_was_exported(run):
    workdir, _, tmp = run
    with miniplm.open(workdir) as corpus:
        n = corpus.sql("select count(*) from selected").fetchall()[0][0]
    export_selection(workdir, tmp / "api", "parquet")
    assert pl.read_parquet(tmp / "api" / "*.parquet").height == n


def test_an_empty_selection_is_still_read_with_its_columns(tmp_path):
    for name in ("hf", "parquet", "jsonl"):
        (tmp_path / name).mkdir()
    HfDataset(tmp_path / "hf", 10, tmp_path / "staging").close()
    empty = datasets.load_from_disk(str(tmp_path / "hf"))
    assert empty.num_rows == 0 and empty.column_names == TEXT_SCHEMA.names
    assert not (tmp_path / "staging").exists()
    assert ParquetShards(tmp_path / "parquet", 10).close().files == ["part-00000.parquet"]
    assert pl.read_parquet(tmp_path / "parquet" / "*.parquet").columns == TEXT_SCHEMA.names
    assert JsonlShards(tmp_path / "jsonl", 10).close().files == ["part-00000.jsonl"]
    assert (tmp_path / "jsonl" / "part-00000.jsonl").read_text() == ""
