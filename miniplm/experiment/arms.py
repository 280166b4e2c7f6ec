"""The paper's comparison, as library steps: the same student under the same compute on each arm's data.

Arms, for each alpha (all drawn from the pipeline's candidates, re-using its scores):
  miniplm        Difference Sampling: the pipeline's top-alpha selection
  uniform        a uniform random sample of the same number of tokens, drawn afresh per seed
  full           the whole candidate pool
  teacher_ppl    the alpha of candidates in one perplexity band (low, mid or high) under the teacher alone ...
  reference_ppl  ... or under the reference alone
  kd             Vanilla KD on the whole pool, the teacher run online, for the FLOPs of the others' steps
  miniplm_strata    the same score's top alpha of each source (select.strata = source)
  miniplm_sampled   alpha of the candidates drawn by the score with a temperature (select.temperature), per seed
Every arm trains for the same steps T (T = the student's training config over the miniplm arm's data; KD gets the
FLOP-matched 3 N_s T / (3 N_s + N_t)), with the same schedule, batch and sequence length; seed k of every arm starts
from the same weights. Data and students are stored under `experiments/` named by what determines them, so adding a
seed, an alpha or an arm trains only what is new.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel

from miniplm.config import CorpusConfig, ExperimentConfig, ModelArchConfig, SelectConfig, StudentConfig
from miniplm.data.corpus import source_fingerprint
from miniplm.data.student_tokenizer import TEACHER, resolve_student_tokenizer
from miniplm.scoring.devices import claimed_gpu
from miniplm.selection.members import export_members
from miniplm.selection.select import SelectionRecord, run_selection, write_members
from miniplm.store.catalog import connect, load_sql
from miniplm.store.hashing import stable_hash
from miniplm.store.manifest import ModelRef, RunManifest
from miniplm.store.models import load_tokenizer, model_fingerprint, tokenizer_fingerprint
from miniplm.store.shards import read_json, write_json
from miniplm.store.step_outputs import produces
from miniplm.store.workdir import Workdir
from miniplm.training.evaluate import EvalSet, capped, evaluate_student, read_target_documents, write_eval_set
from miniplm.training.kd import flop_matched_steps
from miniplm.training.reference import alternative_reference
from miniplm.training.train import build_config, train_lm, trained
from miniplm.training.train_summary import Evaluation, TrainedRun

SEEDED_DATA = {"uniform", "control", "miniplm_sampled"}  # arms whose data is drawn afresh per seed
POOL_ARMS = {"full", "kd"}  # arms that train on the whole pool
MODE_ARMS = {"miniplm_strata", "miniplm_sampled"}  # Difference Sampling's score, selected by a mode beyond the paper's
CURVE_EVALS = 4  # evaluations on the main set during training: at 25, 50, 75 and 100% of the steps


class ArmOptions(BaseModel):
    """What decides an arm's members besides the arm, alpha and seed."""

    band: str = "low"  # teacher_ppl, reference_ppl: which perplexity band
    control_sources: list[str] = []  # control: the target-like sources
    alt_reference_fp: str | None = None  # miniplm_alt_ref: the other reference's fingerprint
    temperature: float = 0.5  # miniplm_sampled: the draw's temperature


class ArmData(BaseModel):
    """One arm's training data: its members, their export in the student's tokenizer, and where they came from."""

    arm: str
    alpha: float
    seed: int | None
    key: str
    members: str
    instances: int
    teacher_tokens: int
    student_tokens: int
    tokens_path: str
    composition: list[dict]


class StudentRun(BaseModel):
    """One student to train: an arm's data, a seed, the steps, and (Vanilla KD) the teacher run online."""

    arm: str
    alpha: float
    seed: int
    data: ArmData
    steps: int
    out_dir: str
    tokenizer: str
    learning_rate: float
    teacher: str | None = None
    kd_ratio: float = 0.0


def experiments_root(wd: Workdir) -> Path:
    return wd.root / "experiments"


def student_tokenizer(manifest: RunManifest, student: StudentConfig) -> str:
    """The student's tokenizer path (after `resolve_student`)."""
    return manifest.teacher.path if student.tokenizer in (None, "", TEACHER) else student.tokenizer


def resolve_student(workdir: str, manifest: RunManifest, student: StudentConfig) -> StudentConfig:
    """The student with its tokenizer made concrete: `train:N` fitted on the pool (once, then found), else as is."""
    path = resolve_student_tokenizer(Workdir.open(workdir), manifest, student.tokenizer)
    return student.model_copy(update={"tokenizer": path})


def alternative_reference_model(workdir: str, manifest: RunManifest) -> ModelRef | None:
    """The reference size tried but not chosen, as a model to score with (the ablation arm's), or None."""
    if manifest.reference is None or manifest.reference.spec != "train":
        return None
    other = alternative_reference(Workdir.open(workdir))
    if other is None or not Path(other.model_dir, "config.json").exists():
        return None
    path = other.model_dir
    return ModelRef(spec="train-alt", path=path, fingerprint=model_fingerprint(path))


def experiment_id(manifest: RunManifest, student: StudentConfig, cfg: ExperimentConfig) -> str:
    return stable_hash(
        "experiment-v1",
        *manifest.scored_corpus,
        student.model_dump(exclude={"enabled", "uniform_baseline"}),
        # the sampled arm's temperature names only the experiments that have the arm
        cfg.model_dump(exclude=set() if "miniplm_sampled" in cfg.arms else {"temperature"}),
    )[:16]


def report_dir(workdir: str, eid: str) -> Path:
    return experiments_root(Workdir.open(workdir)) / eid / "report"


def count_parameters(arch: ModelArchConfig, tokenizer_path: str, max_positions: int) -> int:
    """Parameters of a model built from `arch` for this tokenizer, counted without allocating its weights."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(tokenizer_path)
    config = build_config(arch, len(tok), max_positions, tok.eos_token_id)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def checkpoint_parameters(path: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


# --- evaluation sets ---------------------------------------------------------------------------------------------


def prepare_eval_set(workdir: str, manifest: RunManifest, student: StudentConfig, cfg: ExperimentConfig) -> EvalSet:
    """The target documents (never in the corpus) and the held-out documents, tokenized for the student."""
    wd = Workdir.open(workdir)
    tokenizer = student_tokenizer(manifest, student)
    targets = [
        source_fingerprint(p, CorpusConfig(paths=[p], text_column=cfg.target_text_column)) for p in cfg.target_paths
    ]
    key = stable_hash(
        "eval-v3",
        targets,
        manifest.split_key,
        manifest.instance_spec,
        sorted(manifest.source_keys),
        tokenizer_fingerprint(tokenizer),
        cfg.max_eval_documents,
    )[:16]
    out_dir = experiments_root(wd) / "eval" / key
    if (out_dir / "eval_set.json").exists():
        return EvalSet.model_validate(read_json(out_dir / "eval_set.json"))
    con = connect(wd, manifest)
    target_docs, target_counts = read_target_documents(cfg.target_paths, cfg.target_text_column)
    ids = [d["doc_id"] for d in target_docs]
    in_corpus = {r[0] for r in con.execute(load_sql("documents_in_corpus"), {"ids": ids}).fetchall()} if ids else set()
    target_docs = [d for d in target_docs if d["doc_id"] not in in_corpus]
    target_counts["in_corpus"] = len(in_corpus)  # a target document the students may have trained on: set aside
    rows = con.execute(load_sql("heldout_documents"), {"limit": cfg.max_eval_documents}).fetchall()
    heldout = [dict(zip(("doc_id", "source", "text"), r, strict=True)) for r in rows]
    sets = {"heldout": heldout}
    if cfg.target_paths:
        sets["target"] = capped(target_docs, cfg.max_eval_documents, "target")
    summary = write_eval_set(out_dir, sets, tokenizer).model_copy(update={"target_set_aside": target_counts})
    write_json(summary.model_dump(), out_dir / "eval_set.json")
    return summary


# --- each arm's data ---------------------------------------------------------------------------------------------


def _members(wd: Workdir, manifest: RunManifest, arm: str, alpha: float, seed: int | None, selection: SelectionRecord,
             options: ArmOptions, out: Path) -> None:  # fmt: skip
    con = connect(wd, manifest)
    sid = out.parent.name
    if arm == "uniform":
        params = {"tokens": selection.selected_tokens, "seed": str(seed), "selection_id": sid}
        write_members(con, load_sql("arm_uniform_tokens"), params, out)
    elif arm == "control":
        params = {"tokens": selection.selected_tokens, "seed": str(seed), "selection_id": sid,
                  "sources": options.control_sources}  # fmt: skip
        write_members(con, load_sql("arm_control_tokens"), params, out)
    elif arm == "bottom":
        write_members(con, load_sql("arm_bottom"), {"k": selection.n_selected, "selection_id": sid}, out)
    elif arm == "miniplm_alt_ref":
        params = {"k": selection.n_selected, "selection_id": sid, "teacher_fp": manifest.teacher.fingerprint,
                  "alt_fp": options.alt_reference_fp, "variant": manifest.score_variant}  # fmt: skip
        write_members(con, load_sql("arm_alt_reference"), params, out)
    elif arm in POOL_ARMS:
        write_members(con, load_sql("arm_full_pool"), {"selection_id": sid}, out)
    else:  # teacher_ppl, reference_ppl: as many candidates as Difference Sampling keeps, from one band
        n = con.execute(load_sql("count_candidates")).fetchall()[0][0]
        k = selection.n_selected
        lo = {"low": 0, "mid": (n - k) // 2, "high": n - k}[options.band]
        params = {"model": arm.removesuffix("_ppl"), "lo": lo, "hi": lo + k, "selection_id": sid}
        write_members(con, load_sql("arm_single_model"), params, out)


def pool_key(manifest: RunManifest) -> str:
    """What decides the candidate pool (and its finite scores) whatever is selected from it."""
    models = (manifest.teacher.fingerprint, manifest.reference.fingerprint, manifest.score_variant)
    return stable_hash(sorted(manifest.source_keys), manifest.split_key, manifest.instance_spec, models)


def arm_data_key(arm: str, alpha: float, seed: int | None, selection: SelectionRecord, options: ArmOptions,
                 tokenizer: str, pool: str) -> str:  # fmt: skip
    what = {"arm": arm, "tokenizer": tokenizer_fingerprint(tokenizer)}
    if arm in POOL_ARMS:  # the whole pool is the same at every alpha: its students train once for a sweep
        what["pool"] = pool
    else:
        what |= {"selection": selection.selection_id, "alpha": alpha}
    if arm in SEEDED_DATA:
        what["seed"] = seed
    if arm.endswith("_ppl"):
        what["band"] = options.band
    if arm == "control":
        what["sources"] = sorted(options.control_sources)
    if arm == "miniplm_alt_ref":
        what["alt_reference"] = options.alt_reference_fp
    if arm == "miniplm_sampled":
        what["temperature"] = options.temperature
    return stable_hash("arm-data-v1", what)[:16]


def mode_selection(arm: str, alpha: float, seed: int | None, options: ArmOptions) -> SelectConfig:
    """The selection a mode arm trains on: Difference Sampling's score, per source or drawn with a temperature."""
    if arm == "miniplm_strata":
        return SelectConfig(alpha=alpha, strata="source")
    return SelectConfig(alpha=alpha, temperature=options.temperature, seed=seed or 0)


def _arm_data_written(workdir: str, manifest: RunManifest, arm: str, alpha: float, seed: int | None,
                      selection: SelectionRecord, student: StudentConfig, options: ArmOptions) -> bool:  # fmt: skip
    out_dir = _arm_dir(Workdir.open(workdir), manifest, arm, alpha, seed, selection, student, options)[2]
    return any(out_dir.glob("tokens-*.json"))


@produces(_arm_data_written)
def arm_data(
    workdir: str,
    manifest: RunManifest,
    arm: str,
    alpha: float,
    seed: int | None,
    selection: SelectionRecord,
    student: StudentConfig,
    options: ArmOptions,
) -> ArmData:
    """Members of one arm (the selection itself for miniplm) exported in the student's tokenizer, one instance to
    one training sequence."""
    wd = Workdir.open(workdir)
    tokenizer = student_tokenizer(manifest, student)
    data_arm, key, out_dir = _arm_dir(wd, manifest, arm, alpha, seed, selection, student, options)
    if arm == "miniplm":
        members = wd.selected(selection.selection_id)
    elif arm in MODE_ARMS:  # a selection of its own, recorded beside the paper's (the `selections` view)
        members = wd.selected(run_selection(wd, manifest, mode_selection(arm, alpha, seed, options)).selection_id)
    else:
        members = out_dir / "members.parquet"
    if not members.exists():
        _members(wd, manifest, data_arm, alpha, seed, selection, options, members)
    export = export_members(wd, manifest, members, out_dir, tokenizer)
    con = connect(wd, manifest)
    rel = con.sql(load_sql("arm_composition"), params={"members_path": str(members)})
    composition = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    return ArmData(
        arm=arm,
        alpha=alpha,
        seed=seed if arm in SEEDED_DATA else None,
        key=key,
        members=str(members),
        instances=export["instances"],
        teacher_tokens=export["teacher_tokens"],
        student_tokens=export["student_tokens"],
        tokens_path=export["tokens_path"],
        composition=composition,
    )


def _arm_dir(wd: Workdir, manifest: RunManifest, arm: str, alpha: float, seed: int | None, selection: SelectionRecord,
             student: StudentConfig, options: ArmOptions) -> tuple[str, str, Path]:  # fmt: skip
    data_arm = "full" if arm in POOL_ARMS else arm  # KD trains on the pool too: the same data
    tokenizer = student_tokenizer(manifest, student)
    key = arm_data_key(data_arm, alpha, seed, selection, options, tokenizer, pool_key(manifest))
    return data_arm, key, experiments_root(wd) / "data" / f"{data_arm}-{key}"


# --- the students --------------------------------------------------------------------------------------------------


def training_budget(miniplm_data: ArmData, student: StudentConfig) -> dict:
    """T and what set it: the student's configured steps, its tokens per parameter, or its passes over the Difference
    Sampling arm's data; with a note when that data is too small for the tokens-per-parameter goal within the
    passes allowed, so the students train fewer steps than the goal asks."""
    train = student.train
    parameters = count_parameters(student.arch, student.tokenizer, train.block_size + 1)  # (resolved)
    data = miniplm_data.student_tokens
    budget = {"steps": train.steps_for(data, train.block_size, parameters), "data_tokens": data, "capped": False}
    if train.max_steps is None and train.tokens_per_parameter and train.max_passes:
        goal = train.tokens_per_parameter * parameters
        if goal > train.max_passes * data:
            reached = train.max_passes * data / parameters
            goal_steps = math.ceil(goal / (train.batch_size * train.block_size))
            budget |= {
                "capped": True,
                "goal_tokens": goal,
                "note": f"The pool is too small for the students' goal of {train.tokens_per_parameter:g} tokens per "
                f"parameter: Difference Sampling's data holds {data:,} tokens, and at most {train.max_passes:g} "
                f"passes over it allow {reached:.1f} tokens per parameter, so every arm trains {budget['steps']:,} "
                f"steps instead of the goal's {goal_steps:,}. A smaller student, or a larger pool, would reach the "
                "goal.",
            }
    return budget


def steps_for_alpha(miniplm_data: ArmData, student: StudentConfig) -> int:
    """T: the student's configured steps, its tokens per parameter, or its passes over the Difference Sampling arm's
    data (see training_budget)."""
    return training_budget(miniplm_data, student)["steps"]


def kd_allowed(manifest: RunManifest, student: StudentConfig) -> str | None:
    """Why Vanilla KD cannot run with this student (None when it can): it compares distributions token by token."""
    path = student_tokenizer(manifest, student)
    if path == manifest.teacher.path:
        return None
    teacher, own = load_tokenizer(manifest.teacher.path), load_tokenizer(path)
    if teacher.get_vocab() == own.get_vocab():
        return None
    return "the student's tokenizer is not the teacher's; Vanilla KD needs the same tokens"


def plan_runs(
    workdir: str,
    manifest: RunManifest,
    student: StudentConfig,
    cfg: ExperimentConfig,
    data: dict[tuple[str, float, int], ArmData],
    steps: dict[float, int],
) -> list[StudentRun]:
    """Every (alpha, arm, seed) to train, with its steps; a run's folder is named by what determines its weights
    (so runs that train alike, such as the full pool's at every alpha of a fixed token budget, train once)."""
    tokenizer = student_tokenizer(manifest, student)
    n_student = count_parameters(student.arch, tokenizer, student.train.block_size + 1)
    n_teacher = checkpoint_parameters(manifest.teacher.path) if "kd" in cfg.arms else 0
    runs = []
    for alpha in cfg.alphas:
        for arm in cfg.arms:
            for seed in range(cfg.seeds):
                if (arm, alpha, seed) not in data:
                    continue
                kd = arm == "kd"
                arm_steps = flop_matched_steps(steps[alpha], n_student, n_teacher) if kd else steps[alpha]
                runs.append(student_run(workdir, manifest, student, data[(arm, alpha, seed)], arm_steps, seed,
                                        cfg.kd_ratio if kd else 0.0))  # fmt: skip
    return runs


def student_run(
    workdir: str,
    manifest: RunManifest,
    student: StudentConfig,
    data: ArmData,
    steps: int,
    seed: int,
    kd_ratio: float = 0.0,
) -> StudentRun:
    """One student on one arm's data: what trains it, in a folder named by what determines its weights."""
    tokenizer = student_tokenizer(manifest, student)
    kd = data.arm == "kd"
    key = stable_hash(
        "student-run-v2",
        data.key,
        steps,
        seed,
        student.arch.model_dump(),
        # max_passes only ever lowers T, which is in the key: held at None, as the runs keyed before its default
        # became 8 had it, so they stay valid
        student.train.model_copy(update={"max_passes": None}).model_dump(
            exclude={"max_steps", "seed", "device", "eval_interval"}
        ),
        tokenizer_fingerprint(tokenizer),
        manifest.teacher.fingerprint if kd else None,
        kd_ratio,
    )[:16]
    return StudentRun(
        arm=data.arm,
        alpha=data.alpha,
        seed=seed,
        data=data,
        steps=steps,
        out_dir=str(experiments_root(Workdir.open(workdir)) / "runs" / f"{data.arm}-{key}"),
        tokenizer=tokenizer,
        learning_rate=student.train.learning_rate,
        teacher=manifest.teacher.path if kd else None,
        kd_ratio=kd_ratio,
    )


def with_learning_rate(student: StudentConfig, learning_rate: float) -> StudentConfig:
    return student.model_copy(update={"train": student.train.model_copy(update={"learning_rate": learning_rate})})


def tuning_alpha(cfg: ExperimentConfig) -> float:
    """The alpha the learning rate is tuned at: the middle one of a sweep."""
    return cfg.alphas[len(cfg.alphas) // 2]


def plan_tuning(
    workdir: str,
    manifest: RunManifest,
    student: StudentConfig,
    cfg: ExperimentConfig,
    data: dict[tuple[str, float, int], ArmData],
    steps: dict[float, int],
) -> list[StudentRun]:
    """The learning-rate sweep: the uniform arm alone, seed 0, at the tuning alpha, one run per learning rate (the
    best one is then the main experiment's uniform seed-0 run, so it trains once)."""
    alpha = tuning_alpha(cfg)
    only = cfg.model_copy(update={"arms": ["uniform"], "seeds": 1, "alphas": [alpha]})
    return [run for lr in cfg.learning_rates
            for run in plan_runs(workdir, manifest, with_learning_rate(student, lr), only, data, steps)]  # fmt: skip


def heldout_loss(evaluation: Evaluation) -> float | None:
    """A student's loss on the pool's held-out documents (nats/token), from its per-document evaluation."""
    import polars as pl

    docs = pl.read_parquet(evaluation.path).filter(pl.col("set") == "heldout")
    n = docs["n_predicted"].sum()
    return float(docs["sum_nll"].sum() / n) if n else None


def pick_learning_rate(runs: list[StudentRun], evaluations: list[Evaluation]) -> dict:
    """The sweep's record and its winner: the lowest held-out loss (never the target: tuning on it would leak)."""
    tried = [{"learning_rate": run.learning_rate, "heldout_loss": heldout_loss(ev), "run": run.out_dir}
             for run, ev in zip(runs, evaluations, strict=True)]  # fmt: skip
    scored = [t for t in tried if t["heldout_loss"] is not None]
    if not scored:
        raise ValueError("the learning-rate sweep needs held-out documents to judge it: raise --heldout-fraction")
    best = min(scored, key=lambda t: t["heldout_loss"])
    return {"tried": [t | {"chosen": t is best} for t in tried], "learning_rate": best["learning_rate"]}


@produces(lambda run: trained(Path(run.out_dir)))
def train_run(workdir: str, run: StudentRun, student: StudentConfig, eval_tokens: str | None) -> TrainedRun:
    """Train one student; its summary (with its loss history, evaluated on `eval_tokens` at each quarter of the
    steps) is `out_dir/summary.json`."""
    cfg = student.train.model_copy(
        update={
            "max_steps": run.steps,
            "seed": run.seed,
            "learning_rate": run.learning_rate,
            "eval_interval": math.ceil(run.steps / CURVE_EVALS),
            "max_passes": None,  # T is fixed above; the cap that chose it is not part of what trains
        }
    )
    summary = train_lm(
        Path(run.out_dir),
        student.arch,
        run.tokenizer,
        Path(run.data.tokens_path),
        cfg,
        Path(eval_tokens) if eval_tokens else None,
        max_positions=cfg.block_size + 1,
        desc=f"train {run.arm} a={run.alpha} seed {run.seed} lr {run.learning_rate:g}",
        layout="instances",
        teacher=run.teacher,
        kd_ratio=run.kd_ratio,
    )
    # which GPU trained it, where a process per GPU trains the students (see flows/students.py)
    return TrainedRun(**summary.model_dump(exclude={"history", "run_key"}), gpu=claimed_gpu())


def _evaluation_file(run: StudentRun, eval_set: EvalSet) -> Path:
    return Path(run.out_dir) / f"eval-{Path(eval_set.path).name}.parquet"


@produces(lambda run, eval_set: _evaluation_file(run, eval_set).exists())
def evaluate_run(workdir: str, run: StudentRun, student: StudentConfig, eval_set: EvalSet) -> Evaluation:
    """Per-document losses of the trained student on the evaluation set (`out_dir/eval-<set>.parquet`)."""
    out = _evaluation_file(run, eval_set)
    return evaluate_student(
        Path(run.out_dir) / "model", Path(eval_set.path), student.train.block_size, student.train.device, out
    )


def _harness_file(run: StudentRun, cfg: ExperimentConfig) -> Path:
    key = stable_hash("lm-eval-v1", cfg.lm_eval_tasks, cfg.lm_eval_include, cfg.lm_eval_limit)[:12]
    return Path(run.out_dir) / f"lm-eval-{key}.json"


@produces(lambda run, cfg: _harness_file(run, cfg).exists())
def harness_run(workdir: str, run: StudentRun, student: StudentConfig, cfg: ExperimentConfig) -> dict:
    """The student on the lm-evaluation-harness tasks: {task: {metric: value}} or {task: {"unavailable": why}}."""
    from miniplm.training.harness import evaluate_tasks

    out = _harness_file(run, cfg)
    if out.exists():
        return read_json(out)
    results = evaluate_tasks(Path(run.out_dir) / "model", cfg.lm_eval_tasks, cfg.lm_eval_include, cfg.lm_eval_limit,
                             student.train.block_size, student.train.device)  # fmt: skip
    write_json(results, out)
    return results


def flops(parameters: int, tokens: int, teacher_parameters: int | None) -> float:
    """Training compute: 6 N D for the student's forward and backward, plus 2 N_t D for an online teacher."""
    return 6.0 * parameters * tokens + 2.0 * (teacher_parameters or 0) * tokens


def passes(run_tokens: int, data_tokens: int) -> float:
    return run_tokens / data_tokens if data_tokens else math.nan
