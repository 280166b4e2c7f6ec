"""The reference LM: trained from scratch on D_ref, in the teacher's tokenizer, kept until the user asks again.

Retraining it whenever data arrives would change every reference score and force a full re-score, so the
trained reference is an artifact with a fingerprint: reused as long as it exists, replaced on `retrain`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from miniplm.catalog import connect, load_sql
from miniplm.config import ReferenceConfig
from miniplm.models import ResolvedModel, model_fingerprint
from miniplm.shards import read_json, write_json
from miniplm.train import train_lm, write_token_stream
from miniplm.workdir import Workdir


def write_split_tokens(workdir: Workdir, manifest: dict, split: str, out: Path) -> int:
    """All instances of a split as one flat token stream (teacher tokenizer)."""
    con = connect(workdir, manifest)
    reader = con.sql(load_sql("split_instances"), params={"split": split}).to_arrow_reader(4096)
    return write_token_stream(out, (ids for batch in reader for ids in batch.column("token_ids").to_pylist()))


def train_reference(workdir: Workdir, manifest: dict, cfg: ReferenceConfig, max_len: int) -> ResolvedModel:
    final = workdir.reference_dir
    info_path = final / "miniplm_reference.json"
    if (final / "config.json").exists() and info_path.exists() and not cfg.retrain:
        return ResolvedModel(spec="train", path=str(final), fingerprint=model_fingerprint(final))
    run_dir = workdir.models / "reference.run"
    if cfg.retrain:
        shutil.rmtree(run_dir, ignore_errors=True)
    train_path, heldout_path = run_dir / "d_ref.tokens", run_dir / "heldout.tokens"
    n_train = write_split_tokens(workdir, manifest, "reference", train_path)
    if n_train < 16:
        raise ValueError(
            f"D_ref has {n_train} tokens: too few to train a reference LM. Raise "
            "split.reference_fraction, add data, or pass an existing reference model."
        )
    write_split_tokens(workdir, manifest, "heldout", heldout_path)
    train_cfg = cfg.train
    if "block_size" not in train_cfg.model_fields_set:  # see whole instances, as it will when scoring
        train_cfg = train_cfg.model_copy(update={"block_size": max_len})
    summary = train_lm(
        run_dir,
        cfg.arch,
        manifest["teacher"]["path"],
        train_path,
        train_cfg,
        eval_tokens=heldout_path,
        max_positions=max_len,
        desc="train reference",
    )
    tmp = final.with_name(".reference.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(summary["model_dir"], tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_json(
        {
            "d_ref_tokens": n_train,
            "steps": summary["steps"],
            "final_eval_loss": summary["final_eval_loss"],
            "final_train_loss": summary["final_train_loss"],
            "parameters": summary["parameters"],
        },
        info_path,
    )
    return ResolvedModel(spec="train", path=str(final), fingerprint=model_fingerprint(final))


def reference_info(workdir: Workdir) -> dict:
    path = workdir.reference_dir / "miniplm_reference.json"
    return read_json(path) if path.exists() else {}
