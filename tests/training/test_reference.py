"""The reference LM: trained to D_ref's size, measured against a unigram model and a uniform guess, and refused
when it is no better than the unigram model (its scores would then measure what it failed to learn)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from miniplm.config import ReferenceConfig
from miniplm.data.sequences import write_sequences
from miniplm.store.reference_record import (
    ReferenceQuality,
    ReferenceRecord,
    read_reference_record,
    write_reference_record,
)
from miniplm.training.reference import (
    SHAPES,
    WeakReferenceError,
    check_quality,
    measure_quality,
    reference_arch,
    reference_candidates,
)
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")  # the CLI processes report to the session's server


def test_reference_grows_with_d_ref_up_to_the_papers_size():
    sizes = [reference_arch(t).kwargs for t in (1_000, 1_000_000, 20_000_000, 200_000_000, 5_000_000_000)]
    widths = [(k["hidden_size"], k["num_hidden_layers"]) for k in sizes]
    assert widths[0] == SHAPES[0] and widths[-1] == SHAPES[-1] == (768, 12)
    assert widths == sorted(widths) and len(set(widths)) >= 4
    for tokens in (20_000_000, 5_000_000_000):  # within D_ref's tokens / 20 once the data allows it
        k = reference_arch(tokens).kwargs
        assert 12 * k["hidden_size"] ** 2 * k["num_hidden_layers"] <= tokens / 20


def test_reference_sizes_tried_are_the_rule_and_its_neighbours():
    def shapes(tokens: int, n: int) -> list[tuple[int, int]]:
        return [(a.kwargs["hidden_size"], a.kwargs["num_hidden_layers"]) for a in reference_candidates(tokens, n)]

    assert shapes(1_000, 2) == [SHAPES[0], SHAPES[1]]  # the smallest, and the next larger (no smaller one)
    rule = (reference_arch(200_000_000).kwargs["hidden_size"], reference_arch(200_000_000).kwargs["num_hidden_layers"])
    at = SHAPES.index(rule)
    assert shapes(200_000_000, 3) == [SHAPES[at], SHAPES[at + 1], SHAPES[at - 1]]
    assert shapes(5_000_000_000, 3) == [SHAPES[-1], SHAPES[-2]]  # nothing above the paper's size
    assert len(shapes(200_000_000, 1)) == 1


def test_baselines_are_measured_on_the_same_tokens(tmp_path, models):
    """The unigram loss is the add-one-smoothed counts' cross-entropy on the validation targets; uniform is ln V."""
    from transformers import AutoModelForCausalLM

    vocab = AutoModelForCausalLM.from_pretrained(models["teacher"]).config.vocab_size
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=vocab)
    validation = rng.integers(0, vocab, size=300)
    write_sequences(tmp_path / "val.tokens", [validation.tolist()])
    got = measure_quality(models["teacher"], counts, tmp_path / "val.tokens", block_size=64)
    targets = validation[1:]  # windows of 64 + 1 tokens, one after another, predict every token after the first
    expected = -np.log((counts[targets] + 1) / (counts.sum() + vocab)).mean()
    assert got.validation_tokens == len(targets)
    assert got.unigram_loss == pytest.approx(expected)
    assert got.uniform_loss == pytest.approx(math.log(vocab))
    assert 0 < got.validation_loss < 3 * math.log(vocab)


def test_a_weak_reference_stops_with_what_to_do():
    weak = ReferenceRecord(validation_loss=6.1, unigram_loss=6.0, uniform_loss=10.8, d_ref_tokens=1843)
    with pytest.raises(WeakReferenceError) as raised:
        check_quality(weak, ReferenceConfig(), reference_fraction=0.05)
    message = str(raised.value)
    for hint in ("--reference-fraction (now 0.05)", "--reference PATH", "--accept-weak-reference", "1,843 tokens"):
        assert hint in message
    check_quality(weak, ReferenceConfig(accept_weak=True), 0.05)  # accepted: goes on
    better = weak.model_copy(update={"validation_loss": 5.0})
    check_quality(better, ReferenceConfig(), 0.05)  # better than unigram: goes on


def miniplm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=900, check=False
    )


def test_run_refuses_a_reference_that_learned_nothing_and_passes_with_enough_d_ref(tmp_path, models):
    texts = corpus_texts(1987)  # all of the language reference's paragraphs, ~150k tokens in the tiny tokenizer
    corpus = write_jsonl(tmp_path / "corpus.jsonl", texts)
    common = ["--corpus", str(corpus), "--teacher", str(models["teacher"]), "--workdir", str(tmp_path / "wd"),
              "--max-len", "64", "--no-students", "--json"]  # fmt: skip
    # 13 D_ref documents: ten passes over them already beat a unigram model, so 3 steps stand for too little to learn
    tiny = miniplm("run", *common, "--reference-fraction", "0.01", "--reference-steps", "3")
    assert tiny.returncode == 1, tiny.stdout[-2000:] + tiny.stderr[-2000:]
    assert "is no better than a unigram model" in tiny.stderr and "--accept-weak-reference" in tiny.stderr
    assert "Traceback" not in tiny.stderr
    ok = miniplm("run", *common, "--reference-fraction", "0.2")
    assert ok.returncode == 0, ok.stderr[-3000:]
    reference = json.loads(ok.stdout.strip().splitlines()[-1])["reference"]
    assert reference["validation_loss"] < reference["unigram_loss"] < reference["uniform_loss"]
    assert reference["steps"] == reference["planned_steps"] or reference["stopped_early"]
    assert reference["d_ref_tokens"] > 20_000


def test_the_reference_record_keeps_the_keys_it_was_given(tmp_path):
    """A given reference's quality.json holds its spec and quality only, as before the record was typed."""
    given = ReferenceRecord(trained=False, spec="x", validation_loss=5.0, unigram_loss=6.0, uniform_loss=8.0,
                            validation_tokens=10)  # fmt: skip
    path = write_reference_record(given, tmp_path / "quality.json")
    on_disk = json.loads(path.read_text())
    assert sorted(on_disk) == sorted(["trained", "spec", *ReferenceQuality.model_fields])
    assert read_reference_record(path) == given and read_reference_record(path).summary_json() == on_disk
    assert read_reference_record(tmp_path / "none.json") is None
