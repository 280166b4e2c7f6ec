"""A reduced scoring precision is measured against float32 on the run's own candidates before it is used, and a
drift above score.max_drift falls back to float32 (tests that assert accuracy pin their dtype instead)."""

import json

import pytest
import torch

from miniplm.config import (
    CorpusConfig,
    InstanceConfig,
    PipelineConfig,
    ReferenceConfig,
    ScoreConfig,
    SplitConfig,
    StudentConfig,
    TrainConfig,
)
from miniplm.pipeline_steps import previous_manifest
from miniplm.scoring.precision import _cache_file, decide_precision, sample_candidates
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def scored(tmp_path_factory, models, prefect_harness):
    from flows.pipeline import miniplm_pipeline

    tmp = tmp_path_factory.mktemp("precision")
    corpus = write_jsonl(tmp / "a.jsonl", corpus_texts(60, seed=2))
    cfg = PipelineConfig(
        workdir=str(tmp / "wd"),
        corpus=CorpusConfig(paths=[str(corpus)]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=48),
        split=SplitConfig(reference_fraction=0.2),
        reference=ReferenceConfig(train=TrainConfig(max_steps=5, batch_size=4), accept_weak=True, candidates=1),
        score=ScoreConfig(dtype="float32"),
        student=StudentConfig(enabled=False),
    )
    return cfg, miniplm_pipeline(cfg)


def plain_mean_logp(path: str, ids: list[int]) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(x).logits.double(), -1)[0, :-1].gather(1, x[0, 1:, None])
    return float(logp.mean())


def test_a_run_records_its_precision_and_why(scored):
    cfg, summary = scored
    assert summary.score_precision.dtype == "float32" == summary.score_variant.split("-s")[0]
    assert summary.score_precision.chosen_by == "as configured"
    # and how it attended: packed on a CPU is SDPA per instance; no GPU kernel was tried, so none fell back
    assert summary.score_attention == {"teacher": ["per-instance sdpa"], "reference": ["per-instance sdpa"]}
    assert summary.score_attention_fallback is None


def test_a_reduced_precision_is_measured_and_a_drift_above_the_bound_falls_back(scored):
    cfg, _ = scored
    manifest = previous_manifest(cfg.workdir)
    lenient = decide_precision(cfg.workdir, manifest, ScoreConfig(max_drift=10.0), False, reduced=torch.bfloat16)
    measured = lenient.measured
    assert lenient.dtype == "bfloat16" and not lenient.fell_back
    sample = sample_candidates(Workdir.open(cfg.workdir), manifest)
    assert measured.instances == len(sample) and measured.tokens == sum(len(s) for s in sample)
    assert 0 <= measured.median_drift <= measured.max_drift < 1.0
    assert 0 <= measured.near_threshold <= measured.instances and measured.speedup > 0
    # remembered for this machine, these models and this dtype: the next run reads it
    known = json.loads(_cache_file().read_text())
    assert any(manifest.teacher.fingerprint in key and "bfloat16" in key for key in known)
    strict = decide_precision(cfg.workdir, manifest, ScoreConfig(max_drift=0.0), False, reduced=torch.bfloat16)
    assert strict.dtype == "float32" and strict.fell_back and strict.measured == measured
    assert "more than score.max_drift 0.0: float32 instead" in strict.chosen_by


def test_the_float32_side_of_the_measurement_is_the_models_own(scored):
    """The sample's scores in float32 are teacher minus reference mean log-probs, as plain transformers gives them."""
    cfg, _ = scored
    from miniplm.scoring.precision import measure_drift
    from miniplm.scoring.scorer import LMScorer

    manifest = previous_manifest(cfg.workdir)
    sample = sample_candidates(Workdir.open(cfg.workdir), manifest)[:3]
    t, r = manifest.teacher.path, manifest.reference.path
    sums_t, n = LMScorer(t, device="cpu", dtype="float32").score_all(sample)
    sums_r, _ = LMScorer(r, device="cpu", dtype="float32").score_all(sample)
    for i, ids in enumerate(sample):
        expected = plain_mean_logp(t, ids) - plain_mean_logp(r, ids)
        assert (sums_t[i] - sums_r[i]) / n[i] == pytest.approx(expected, abs=1e-4)
    same = measure_drift(t, r, sample, torch.float32)  # a "reduced" dtype that is float32 itself drifts by nothing
    assert same.max_drift < 1e-6
