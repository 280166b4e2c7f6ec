"""The reference LM: trained from scratch on D_ref, in the teacher's tokenizer, kept until the user asks again.

As in the paper (a 104M model, one pass over a 5B-token D_ref), training follows D_ref's size: about one pass,
capped by a token budget, a model sized to the data (about one parameter per 20 tokens), and a validation slice of
D_ref that stops training early and picks the weights kept. Every reference is then measured against two baselines
on the same validation tokens: a uniform guess over the vocabulary, ln(V), and a unigram model fitted on D_ref.
A reference no better than the unigram model knows nothing a word count does not, and its scores would mostly
measure what it failed to learn: such a reference stops the run unless the user accepts it.

Retraining it whenever data arrives would change every reference score and force a full re-score, so the
trained reference is an artifact with a fingerprint, reused until `retrain`. What it was trained on is recorded:
a run whose split or instances differ trains a new one rather than scoring with a model that saw candidates.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miniplm.config import ModelArchConfig, ReferenceConfig, small_llama
from miniplm.data.sequences import TOKEN_DTYPE, read_tokens
from miniplm.store.catalog import connect, load_sql
from miniplm.store.hashing import stable_hash
from miniplm.store.manifest import ModelRef, RunManifest
from miniplm.store.models import load_tokenizer, model_fingerprint
from miniplm.store.reference_record import (
    INFO,
    ReferenceCandidate,
    ReferenceQuality,
    ReferenceRecord,
    SourceGap,
    read_reference_record,
    write_reference_record,
)
from miniplm.store.shards import temporary_name
from miniplm.store.workdir import Workdir
from miniplm.training.losses import lm_loss_sum
from miniplm.training.train import train_lm

# (hidden size, layers) from small to the paper's scale; non-embedding parameters are about 12 x hidden^2 x layers.
SHAPES = ((64, 2), (128, 2), (128, 4), (256, 4), (384, 6), (512, 8), (768, 12))
TOKENS_PER_PARAMETER = 20
QUALITY_TOKENS = 200_000  # validation tokens the final measurement reads, at most
GAP_TOKENS = 50_000  # validation tokens the teacher and the reference are compared on, at most


@dataclass(frozen=True)
class ReferenceStreams:
    """D_ref as two flat token streams, training and validation, and the training stream's unigram counts."""

    train_path: Path
    validation_path: Path
    train_tokens: int
    validation_tokens: int
    documents: int
    validation_fallback: str  # the document that validates when the hash put none in the slice ("" for none)
    unigram_counts: np.ndarray


class WeakReferenceError(ValueError):
    """The reference LM is no better than a unigram model: its scores would be noise."""


def _fitting_shape(train_tokens: int) -> int:
    budget = train_tokens / TOKENS_PER_PARAMETER
    fitting = [i for i, (h, layers) in enumerate(SHAPES) if 12 * h * h * layers <= budget]
    return fitting[-1] if fitting else 0


def reference_arch(train_tokens: int) -> ModelArchConfig:
    """The largest default shape whose non-embedding parameters stay within D_ref's tokens / 20."""
    hidden, layers = SHAPES[_fitting_shape(train_tokens)]
    return small_llama(layers, hidden)


def reference_candidates(train_tokens: int, n: int) -> list[ModelArchConfig]:
    """`n` default shapes to choose the reference from on D_ref's validation slice: the one sized by the rule, then
    the next larger (trained with early stopping, a larger model often still wins on a small D_ref), then the next
    smaller."""
    at = _fitting_shape(train_tokens)
    order = [at, at + 1, at - 1, at + 2]
    picked = [i for i in order if 0 <= i < len(SHAPES)][:n]
    return [small_llama(SHAPES[i][1], SHAPES[i][0]) for i in picked]


def _write_stream(path: Path, batches) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    n = 0
    with open(tmp, "wb") as f:
        for values in batches:
            f.write(values.astype(TOKEN_DTYPE).tobytes())
            n += len(values)
    tmp.replace(path)
    return n


def write_reference_streams(
    workdir: Workdir, manifest: RunManifest, validation_fraction: float, out_dir: Path
) -> ReferenceStreams:
    """D_ref's instances as two flat token streams, training and validation, split by a seeded hash of doc_id (at
    least one document validates when D_ref has two)."""
    con = connect(workdir, manifest)
    salt = f"validation:{manifest.split.seed}"
    docs = con.sql(load_sql("split_documents"), params={"split": "reference", "salt": salt}).fetchall()
    cutoff = int(validation_fraction * 1_000_000)
    fallback = docs[0][0] if len(docs) >= 2 and docs[0][1] >= cutoff else ""
    params = {"split": "reference", "salt": salt, "cutoff": cutoff, "fallback": fallback}
    reader = con.sql(load_sql("split_instances"), params=params).to_arrow_reader(4096)
    vocab = len(load_tokenizer(manifest.teacher.path))
    counts = np.zeros(vocab, dtype=np.int64)
    train_path, val_path = out_dir / "train.tokens", out_dir / "validation.tokens"
    train_tmp, val_tmp = temporary_name(train_path), temporary_name(val_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 0, "validation": 0}
    with open(train_tmp, "wb") as train_f, open(val_tmp, "wb") as val_f:
        for batch in reader:
            flags = batch.column("validation").to_numpy(zero_copy_only=False)
            tokens = batch.column("token_ids")
            offsets = tokens.offsets.to_numpy()
            values = tokens.values.to_numpy()
            for i, is_val in enumerate(flags):
                seq = values[offsets[i] : offsets[i + 1]].astype(TOKEN_DTYPE)
                (val_f if is_val else train_f).write(seq.tobytes())
                sizes["validation" if is_val else "train"] += len(seq)
                if not is_val:
                    counts += np.bincount(seq, minlength=vocab)[:vocab]
    train_tmp.replace(train_path)
    val_tmp.replace(val_path)
    return ReferenceStreams(
        train_path=train_path,
        validation_path=val_path,
        train_tokens=sizes["train"],
        validation_tokens=sizes["validation"],
        documents=len(docs),
        validation_fallback=fallback,
        unigram_counts=counts,
    )


@torch.inference_mode()
def measure_quality(model_dir: Path, unigram_counts: np.ndarray, validation: Path, block_size: int) -> ReferenceQuality:
    """Validation loss of the model, of a unigram model (add-one smoothed counts), and of a uniform guess, in
    nats/token, all on the same predicted tokens: windows of `block_size` + 1 from the start of `validation`."""
    from transformers import AutoModelForCausalLM

    data = read_tokens(validation)[: QUALITY_TOKENS + 1]
    vocab = len(unigram_counts)
    uniform = math.log(vocab)
    block = min(block_size, len(data) - 1)
    if block < 1:
        return ReferenceQuality(uniform_loss=uniform, validation_tokens=0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    log_unigram = np.log((unigram_counts + 1) / (unigram_counts.sum() + vocab))
    model_total = unigram_total = 0.0
    n = 0
    for start in range(0, len(data) - 1, block):
        window = torch.from_numpy(data[start : start + block + 1].astype(np.int64))[None]
        if window.shape[1] < 2:
            break
        targets = window[0, 1:]
        model_total += lm_loss_sum(model, window).item()
        unigram_total -= float(log_unigram[targets.numpy()].sum())
        n += len(targets)
    return ReferenceQuality(
        validation_loss=model_total / n, unigram_loss=unigram_total / n, uniform_loss=uniform, validation_tokens=n
    )


def check_quality(info: ReferenceRecord, cfg: ReferenceConfig, reference_fraction: float) -> None:
    """Stop the run when the reference is no better than a unigram model, unless the user accepts it."""
    v, u = info.validation_loss, info.unigram_loss
    if cfg.accept_weak or v is None or u is None or v < u:
        return  # (a given reference with no held-out documents to measure it on is reported as unmeasured)
    measured = (
        f"validation loss {v:.3f} nats/token vs {u:.3f} for a unigram model on the same tokens "
        f"(a uniform guess over the vocabulary: {info.uniform_loss:.3f})"
    )
    if info.trained is not False:
        where = f"trained on D_ref ({info.d_ref_tokens or 0:,} tokens in {info.d_ref_documents or 0:,} documents)"
        fixes = (
            f"Raise --reference-fraction (now {reference_fraction}) so that D_ref holds more text, pass a trained "
            "reference with --reference PATH, or add --accept-weak-reference to go on anyway."
        )
    else:
        where = f"{info.spec} (measured on the held-out documents)"
        fixes = "Pass a better reference, train one with --reference train, or add --accept-weak-reference."
    raise WeakReferenceError(
        f"the reference LM {where} is no better than a unigram model: {measured}. Its log-probabilities would "
        f"mostly measure what it failed to learn, and Difference Sampling would keep noise. {fixes}"
    )


def trained_on(manifest: RunManifest, cfg: ReferenceConfig) -> dict:
    """What a trained reference depends on besides its training settings."""
    return {
        "split_key": manifest.split_key,
        "instance_spec": manifest.instance_spec,
        "validation_fraction": cfg.validation_fraction,
    }


def kept_reference_fits(workdir: Workdir, manifest: RunManifest, cfg: ReferenceConfig) -> bool:
    """The trained reference exists and was trained on this run's split and instances."""
    record = reference_info(workdir)
    if record is None or not (workdir.reference_dir / "config.json").exists():
        return False
    return record.trained_on == trained_on(manifest, cfg)


def _train_candidate(workdir: Workdir, manifest: RunManifest, cfg: ReferenceConfig, arch: ModelArchConfig,
                     streams: ReferenceStreams, train_cfg, max_len: int,
                     basis: dict) -> ReferenceCandidate:  # fmt: skip
    run_dir = (
        workdir.models
        / "reference-runs"
        / stable_hash(
            basis, cfg.model_dump(exclude={"retrain", "accept_weak", "arch", "candidates"}), arch.model_dump()
        )
    )
    summary = train_lm(
        run_dir,
        arch,
        manifest.teacher.path,
        streams.train_path,
        train_cfg,
        eval_tokens=streams.validation_path,
        max_positions=max_len,
        desc=f"train reference {arch.kwargs.get('hidden_size')}x{arch.kwargs.get('num_hidden_layers')}",
    )
    return ReferenceCandidate(
        arch=arch.model_dump(),
        model_dir=summary.model_dir,
        parameters=summary.parameters,
        steps=summary.steps,
        planned_steps=summary.planned_steps,
        stopped_early=summary.stopped_early,
        best_step=summary.best_step,
        final_train_loss=summary.final_train_loss,
        selection_loss=summary.final_eval_loss,
        seconds=summary.seconds,
        passes=_tokens_seen(summary.steps, train_cfg, streams) / max(1, streams.train_tokens),
    )


def _tokens_seen(steps: int, train_cfg, streams: ReferenceStreams) -> int:
    return steps * train_cfg.batch_size * min(train_cfg.block_size, streams.train_tokens)


def train_reference(workdir: Workdir, manifest: RunManifest, cfg: ReferenceConfig, max_len: int) -> ModelRef:
    final = workdir.reference_dir
    basis = trained_on(manifest, cfg)
    kept = reference_info(workdir)
    if kept_reference_fits(workdir, manifest, cfg) and not cfg.retrain:
        check_quality(kept, cfg, manifest.split.reference_fraction)
        return ModelRef(spec="train", path=str(final), fingerprint=model_fingerprint(final))
    if kept is not None and not cfg.retrain:
        # The split or the instances changed: the kept reference saw other documents (some now candidates) or
        # other windows, so a new one is trained; every reference score is then recomputed.
        print(f"the trained reference was trained on {kept.trained_on}; this run uses {basis}: retraining")
    streams_dir = workdir.models / "reference-runs" / stable_hash(basis, "streams")
    if cfg.retrain:
        shutil.rmtree(workdir.models / "reference-runs", ignore_errors=True)
    streams = write_reference_streams(workdir, manifest, cfg.validation_fraction, streams_dir)
    if streams.train_tokens < 16:
        raise WeakReferenceError(
            f"D_ref has {streams.train_tokens} training tokens ({streams.documents} documents): too few to "
            f"train a reference LM. Raise --reference-fraction (now {manifest.split.reference_fraction}), add data, "
            "or pass a trained reference with --reference PATH."
        )
    train_cfg = cfg.train
    if train_cfg.block_size is None:  # see whole instances, as it will when scoring
        train_cfg = train_cfg.model_copy(update={"block_size": max_len})
    archs = [cfg.arch] if cfg.arch else reference_candidates(streams.train_tokens, cfg.candidates)
    # every candidate trains with early stopping on D_ref's validation slice; the lowest validation loss is kept
    candidates = [_train_candidate(workdir, manifest, cfg, a, streams, train_cfg, max_len, basis) for a in archs]
    best = min(candidates, key=lambda c: c.selection_loss if c.selection_loss is not None else math.inf)
    quality = measure_quality(
        Path(best.model_dir), streams.unigram_counts, streams.validation_path, train_cfg.block_size
    )
    gap = validation_gap(workdir, manifest, cfg, Path(best.model_dir), streams.validation_fallback)
    tmp = temporary_name(final)
    shutil.copytree(best.model_dir, tmp)
    info = ReferenceRecord(
        trained=True,
        trained_on=basis,
        d_ref_documents=streams.documents,
        d_ref_tokens=streams.train_tokens + streams.validation_tokens,
        train_tokens=streams.train_tokens,
        validation_tokens_total=streams.validation_tokens,
        tokens_seen=_tokens_seen(best.steps, train_cfg, streams),
        **best.model_dump(include={"steps", "planned_steps", "stopped_early", "best_step", "parameters", "arch",
                                   "final_train_loss", "passes"}),  # fmt: skip
        candidates=[c.model_copy(update={"chosen": c is best}) for c in candidates],
        validation_gap=gap,
        **quality.model_dump(),
    )
    write_reference_record(info, tmp / INFO)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    check_quality(info, cfg, manifest.split.reference_fraction)
    return ModelRef(spec="train", path=str(final), fingerprint=model_fingerprint(final))


def validation_gap(workdir: Workdir, manifest: RunManifest, cfg: ReferenceConfig, reference_dir: Path,
                   fallback: str = "") -> list[SourceGap]:  # fmt: skip
    """Teacher and reference mean log-probs on D_ref's validation slice, per source file (at most GAP_TOKENS
    tokens, a seeded choice of its instances): where the teacher knows much more than the reference, Difference
    Sampling's score is high."""
    from miniplm.scoring.scorer import LMScorer

    con = connect(workdir, manifest)
    salt = f"validation:{manifest.split.seed}"
    params = {"split": "reference", "salt": salt, "cutoff": int(cfg.validation_fraction * 1_000_000),
              "fallback": fallback, "limit": GAP_TOKENS}  # fmt: skip
    rows = con.sql(load_sql("validation_instances_by_source"), params=params).fetchall()
    if not rows:
        return []
    sources = [r[0] for r in rows]
    tokens = [list(r[1]) for r in rows]
    sums = {}
    for role, path in (("teacher", manifest.teacher.path), ("reference", str(reference_dir))):
        logp, counts = LMScorer(path, device=cfg.train.device).score_all(tokens)
        sums[role] = logp
    out = []
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        n = int(sum(counts[i] for i in idx))
        if n == 0:
            continue
        teacher = float(sum(sums["teacher"][i] for i in idx)) / n
        reference = float(sum(sums["reference"][i] for i in idx)) / n
        out.append(SourceGap(source=source, instances=len(idx), predicted_tokens=n, teacher_logp=teacher,
                             reference_logp=reference, gap=teacher - reference))  # fmt: skip
    return out


def alternative_reference(workdir: Workdir) -> ReferenceCandidate | None:
    """The candidate reference not chosen (the ablation's other size), or None when only one was trained."""
    record = reference_info(workdir)
    others = [c for c in (record.candidates or [] if record else []) if not c.chosen]
    return others[0] if others else None


def given_reference_quality(workdir: Workdir, manifest: RunManifest, ref: ModelRef, max_len: int) -> ReferenceRecord:
    """For a reference the user brings: measured on held-out documents, against a unigram model fitted on them."""
    con = connect(workdir, manifest)
    params = {"split": "heldout", "salt": "given", "cutoff": 0, "fallback": ""}
    reader = con.sql(load_sql("split_instances"), params=params).to_arrow_reader(4096)
    vocab = len(load_tokenizer(manifest.teacher.path))
    out = workdir.models / "given-reference" / ref.fingerprint
    counts = np.zeros(vocab, dtype=np.int64)

    def batches():
        for batch in reader:
            values = batch.column("token_ids").values.to_numpy().astype(np.int64)
            counts[:] += np.bincount(values, minlength=vocab)[:vocab]
            yield values

    _write_stream(out / "heldout.tokens", batches())
    quality = measure_quality(Path(ref.path), counts, out / "heldout.tokens", max_len)
    return ReferenceRecord(trained=False, spec=ref.spec, **quality.model_dump())


def reference_info(workdir: Workdir) -> ReferenceRecord | None:
    """The trained reference's record, or None when none was trained here."""
    return read_reference_record(workdir.reference_dir / INFO)
