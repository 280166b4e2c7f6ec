import weakref

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from miniplm.scoring.batches import length_sorted_batches
from miniplm.scoring.scorer import LMScorer
from tests.workdirs import scoring_workdir


def plain_mean_logprob(model, tokens: list[int]) -> float:
    """The textbook computation: full log-softmax in float64, gather the next token, average."""
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].double()
    return torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).mean().item()


@pytest.fixture(scope="module")
def sequences(models):
    rng = np.random.default_rng(0)
    from miniplm.store.models import load_tokenizer

    vocab = len(load_tokenizer(str(models["teacher"])))
    return [rng.integers(0, vocab, size=n).tolist() for n in (2, 3, 7, 31, 64, 64, 65, 150, 9, 300)]


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_scores_match_plain_torch(models, sequences, dtype, tolerance, pack):
    """Padded, or end to end in one row where each instance still sees only itself (on a CPU: SDPA per slice)."""
    model = AutoModelForCausalLM.from_pretrained(models["teacher"], dtype=torch.float32).eval()
    scorer = LMScorer(str(models["teacher"]), device="cpu", dtype=dtype, batch_tokens=256, pack=pack)
    sums, counts = scorer.score_all(sequences)
    attention = scorer.model.config._attn_implementation
    assert scorer.pack == pack and attention == ("miniplm_varlen" if pack else "sdpa")
    for seq, s, c in zip(sequences, sums, counts, strict=True):
        assert c == len(seq) - 1
        assert abs(s / c - plain_mean_logprob(model, seq)) < tolerance
    assert scorer.stats.instances == len(sequences)
    assert scorer.stats.tokens == sum(len(s) for s in sequences)


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_long_instances_keep_float64_sums(models, pack):
    """Per-position log-probs add up in float64: a float32 running sum over 2,000 positions alone drifts ~1e-5."""
    model = AutoModelForCausalLM.from_pretrained(models["teacher"], dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    rows = [np.random.default_rng(n).integers(0, vocab, size=n).tolist() for n in (2000, 1500)]
    sums, counts = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", pack=pack).score_all(rows)
    assert sums.dtype == np.float64
    for row, s, c in zip(rows, sums, counts, strict=True):
        assert abs(s / c - plain_mean_logprob(model, row)) < 1e-6


def test_batch_composition_does_not_change_scores(models, sequences):
    one = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", batch_tokens=16).score_all(sequences)[0]
    many = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", batch_tokens=4096).score_all(sequences)[0]
    np.testing.assert_allclose(one, many, atol=1e-4)


def test_out_of_memory_frees_the_failed_batch_halves_the_budget_and_replans_the_rest(models, sequences, monkeypatch):
    """CUDA out-of-memory injected on every batch over 400 tokens: each retry runs after the failed forward's
    activations are gone, every later batch is cut at the halved budget, and the scores equal an unbroken run's."""
    scorer = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", batch_tokens=1024)
    forward, failed, calls = scorer._forward, [], []

    def tight_forward(batch):
        assert all(ref() is None for ref in failed), "the failed forward's activations are still alive"
        size = len(batch.indices) * int(batch.lengths.max())
        calls.append((size, scorer.batch_tokens))
        if size > 400:
            activations = torch.empty(1 << 16)
            failed.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(batch)

    monkeypatch.setattr(scorer, "_forward", tight_forward)
    sums, _ = scorer.score_all(sequences)
    assert scorer.stats.oom_retries == len(failed) == 2 and scorer.batch_tokens == 256
    assert all(size <= budget for size, budget in calls)  # what remained was cut again, not only the failed batch
    assert scorer.stats.instances == len(sequences)
    unbroken = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", batch_tokens=256)
    np.testing.assert_array_equal(sums, unbroken.score_all(sequences)[0])


def test_out_of_memory_on_a_single_instance_is_raised(models, sequences, monkeypatch):
    scorer = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", batch_tokens=1024)
    tried = []

    def no_memory(batch):
        tried.append(len(batch.indices))
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(scorer, "_forward", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        scorer.score_all(sequences)
    assert tried == [3, 1] and scorer.batch_tokens == 512  # halved once, then the longest instance alone failed


def test_a_half_precision_head_writes_float32_logits_from_its_own_weights():
    """The CUDA head: bf16 hidden states and weights multiplied into float32 logits, no float32 copy of the head
    (shapes and dtypes checked on the meta device; a CPU has no such kernel and takes the float32 copy)."""
    from miniplm.scoring.scorer import float32_logits, mixed_head_supported

    h = torch.empty(5, 16, dtype=torch.bfloat16, device="meta")
    weight, bias = torch.empty(100, 16, dtype=torch.bfloat16, device="meta"), torch.empty(100, device="meta")
    logits = float32_logits(h, weight, bias)
    assert logits.shape == (5, 100) and logits.dtype == torch.float32
    assert not mixed_head_supported(torch.device("cpu"))
    exact = float32_logits(torch.randn(3, 16), torch.randn(7, 16), None)
    assert exact.dtype == torch.float32 and exact.shape == (3, 7)


def test_the_attention_path_is_reported(models):
    packed = LMScorer(str(models["teacher"]), device="cpu", dtype="float32", pack=True)
    assert packed.attention == "per-instance sdpa"
    assert LMScorer(str(models["teacher"]), device="cpu", dtype="float32", pack=False).attention == "padded"


def test_single_token_instance_has_no_predicted_position(models):
    sums, counts = LMScorer(str(models["teacher"]), device="cpu", dtype="float32").score_all([[5], [5, 6]])
    assert counts.tolist() == [0, 1]
    assert sums[0] == 0.0
    with np.errstate(invalid="ignore"):
        assert np.isnan(sums[0] / counts[0])


def test_length_sorted_batches_respect_budget_and_cover_all():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 200, size=500).tolist()
    batches = length_sorted_batches(lengths, 512)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 512
    firsts = [max(lengths[i] for i in b) for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_packed_layout_restarts_positions_and_skips_each_last_token():
    from miniplm.scoring.batches import packed_layout

    position_ids, predicts, row_of = packed_layout(torch.tensor([3, 1, 2]))
    assert position_ids.tolist() == [0, 1, 2, 0, 0, 1]
    assert predicts.tolist() == [True, True, False, False, True, False]
    assert row_of.tolist() == [0, 0, 2]


def test_partitions_score_every_candidate_once_as_one_scorer_does(tmp_path, models, monkeypatch):
    from miniplm.config import ScoreConfig
    from miniplm.scoring.partitions import plan_partitions, score_partition
    from miniplm.store.manifest import ModelRef

    wd, manifest, ids, tokens = scoring_workdir(tmp_path, models)
    model = ModelRef(spec="teacher", path=str(models["teacher"]), fingerprint="T")
    cfg = ScoreConfig(device="cpu", dtype="float32")
    partitions = plan_partitions(wd, manifest, model, manifest.score_variant, 300)  # ~1,200 tokens: 4 buckets
    assert len(partitions) >= 3 and sum(p.instances for p in partitions) == len(ids)
    from miniplm.scoring import partitions as kept

    monkeypatch.setattr(kept, "_loaded", {})  # no model held from an earlier test
    loads, load = [], AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(a) or load(*a, **k))
    results = [score_partition(wd, manifest, model, p, cfg) for p in partitions]
    assert len(loads) == 1  # one model load for all the partitions this process scores
    assert sum(r.instances_scored for r in results) == len(ids)
    assert sum(r.tokens_scored for r in results) == sum(len(t) for t in tokens)  # each partition's own figures
    from miniplm.store.catalog import connect

    got = dict(connect(wd, manifest).sql("select instance_id, sum_logp from scores where model_fp = 'T'").fetchall())
    sums, _ = LMScorer(str(models["teacher"]), device="cpu", dtype="float32").score_all(tokens)
    assert got.keys() == set(ids)
    for i, s in zip(ids, sums, strict=True):
        assert abs(got[i] - s) < 1e-4
    # the next plan is sized by the rate these partitions reached: partition_minutes of it
    from miniplm.scoring.partitions import measured_rate, partition_tokens

    rate = measured_rate(wd, "T", manifest.score_variant, gpus=False)
    seconds = sum(r.seconds for r in results)
    reported = sum(r.tokens_scored for r in results) / seconds
    # the reported seconds are rounded to the millisecond: the two agree to within that rounding
    assert rate == pytest.approx(reported, rel=0.0005 * len(results) / seconds + 1e-9)
    assert measured_rate(wd, "T", manifest.score_variant, gpus=True) is None  # no GPU has scored with it
    minutes = ScoreConfig(partition_minutes=0.5)
    assert partition_tokens(minutes, str(models["teacher"]), manifest.score_variant, False, rate) == max(4096,
                            int(30 * rate))  # fmt: skip
    # everything is scored: a partition run again scores nothing, and a new plan is empty
    assert score_partition(wd, manifest, model, partitions[0], cfg).instances_scored == 0
    assert plan_partitions(wd, manifest, model, manifest.score_variant, 300) == []


def test_a_ray_task_on_a_gpu_takes_the_gpu_it_was_given():
    """Ray shows a task only its own GPU, as cuda:0: a node's device index is not passed on; on CPU nodes the
    task's CPUs become torch's threads; a local run keeps what was asked."""
    from flows.runners import task_score_config
    from miniplm.config import RunnerConfig, ScoreConfig

    ray, local = RunnerConfig(kind="ray", cpus_per_task=3), RunnerConfig()
    assert task_score_config(ray, ScoreConfig(device="cuda:3"), gpus=True).device == "cuda"
    assert task_score_config(ray, ScoreConfig(device="auto"), gpus=False).threads == 3
    assert task_score_config(local, ScoreConfig(device="cuda:3"), gpus=True).device == "cuda:3"


GQA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ARCHITECTURES = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
    "opt": dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32),
    "qwen2": GQA,
    # a sliding window shorter than the longest row: packed attention must band it too
    "mistral": {**GQA, "sliding_window": 8},
    # final-logit soft-capping, and no SDPA path in transformers
    "gemma2": {**GQA, "head_dim": 8},
    # the model's own forward scales its logits beyond the output layer: divides (Granite), multiplies (Cohere)
    "granite": {**GQA, "logits_scaling": 4.0},
    "cohere": {**GQA, "logit_scale": 0.5},
}


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_other_architectures_score_like_plain_torch(tmp_path, arch, pack):
    from transformers import AutoConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, vocab_size=256, **ARCHITECTURES[arch])).eval()
    model.save_pretrained(tmp_path)
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 256, size=n).tolist() for n in (4, 19, 40)]
    scorer = LMScorer(str(tmp_path), device="cpu", dtype="float32", pack=pack)
    sums, counts = scorer.score_all(rows)
    assert scorer.pack == (pack and arch != "gemma2")  # Gemma 2 soft-caps attention logits: scored unpacked
    for row, s, c in zip(rows, sums, counts, strict=True):
        assert abs(s / c - plain_mean_logprob(model, row)) < 1e-5


def test_gpu_batches_sized_by_free_memory():
    from transformers import AutoConfig, LlamaConfig

    from miniplm.scoring.devices import gpu_batch_tokens

    llama_1b = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32)
    gib = 1 << 30
    sizes = [gpu_batch_tokens(llama_1b, torch.bfloat16, free * gib) for free in (1, 6, 12, 24, 80, 140)]
    assert sizes[0] == 4096 and sizes[-1] == 131072  # clamped at both ends
    assert sizes == sorted(sizes) and len(set(sizes)) > 3 and all(s % 1024 == 0 for s in sizes)
    # 12 GiB free: the batch's per-layer activations (~57 KB a token in bf16) stay well inside half of it
    assert sizes[2] * (6 * 2048 + 3 * 8192) * 2 < 6 * gib
    assert gpu_batch_tokens(llama_1b, torch.float32, 12 * gib) < sizes[2]  # wider activations, fewer tokens
    # architectures that name their MLP width differently (OPT: ffn_dim; GPT-2: n_inner, None meaning 4x)
    narrow = AutoConfig.for_model("opt", hidden_size=2048, ffn_dim=2048)
    wide = AutoConfig.for_model("opt", hidden_size=2048, ffn_dim=16384)
    assert gpu_batch_tokens(narrow, torch.bfloat16, 12 * gib) > gpu_batch_tokens(wide, torch.bfloat16, 12 * gib)
    gpt2 = AutoConfig.for_model("gpt2", n_embd=2048, n_inner=None)
    assert gpu_batch_tokens(gpt2, torch.bfloat16, 12 * gib) == gpu_batch_tokens(
        AutoConfig.for_model("gpt2", n_embd=2048, n_inner=8192), torch.bfloat16, 12 * gib
    )


def test_logits_no_constant_reproduces_come_from_the_models_own_forward(tmp_path):
    """Where the head alone cannot reproduce a model's logits, the scorer uses the model's own (exact, slower)."""
    from transformers import AutoConfig

    torch.manual_seed(0)
    config = AutoConfig.for_model("granite", vocab_size=256, **ARCHITECTURES["granite"])
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path)
    rows = [np.random.default_rng(2).integers(0, 256, size=n).tolist() for n in (5, 33)]
    scorer = LMScorer(str(tmp_path), device="cpu", dtype="float32")
    assert scorer.model is not None and scorer.logit_scale == pytest.approx(0.25, rel=1e-4)
    scorer.logit_scale = None  # as it decides for a transform that is not a constant scale
    sums, counts = scorer.score_all(rows)
    for row, s, c in zip(rows, sums, counts, strict=True):
        assert abs(s / c - plain_mean_logprob(model, row)) < 1e-5


def test_a_partition_leaves_its_neighbours_writes_alone_and_a_new_plan_clears_what_a_killed_writer_left(
    tmp_path, models
):
    """Partitions of one shard write into one folder, at once on a node of several GPUs: one starting must not
    delete the temporary file another is renaming into place. What a killed writer left is cleared when the next
    scoring pass is planned, before any partition of it writes."""
    from miniplm.config import ScoreConfig
    from miniplm.scoring.partitions import plan_partitions, score_partition
    from miniplm.store.manifest import ModelRef

    wd, manifest, ids, _ = scoring_workdir(tmp_path, models)
    model = ModelRef(spec="teacher", path=str(models["teacher"]), fingerprint="T")
    partitions = plan_partitions(wd, manifest, model, manifest.score_variant, 300)
    assert len({(p.source_key, p.part) for p in partitions}) == 1 < len(partitions)  # one shard, several partitions
    first = partitions[0]
    folder = wd.partition_scores_dir("T", manifest.score_variant, first.source_key, first.part)
    folder.mkdir(parents=True)
    neighbour = folder / ".123-abc.parquet.0123456789abcdef.tmp"  # another partition's shard, being written
    neighbour.write_bytes(b"half a shard")
    scored = score_partition(wd, manifest, model, first, ScoreConfig(device="cpu", dtype="float32"))
    assert scored.instances_scored == first.instances > 0
    assert neighbour.exists()
    assert plan_partitions(wd, manifest, model, manifest.score_variant, 300)  # the rest, planned again
    assert not neighbour.exists()
