"""`miniplm experiment`: the paper's comparison (flows/experiment.py), from a preset, a --config file or options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app
from flows.cli.options import (
    ConfigOpt,
    CorpusOpt,
    HeldoutFractionOpt,
    JsonOpt,
    MaxLenOpt,
    ReferenceFractionOpt,
    SeedOpt,
    TeacherOpt,
    TextColumnOpt,
    WaitOpt,
    WorkdirOpt,
    build_config,
    floats,
    one_line,
    run_and_report,
)
from flows.cli.pipeline import run_experiment
from flows.cli.tables import err, print_experiment


@app.command()
def experiment(
    ctx: typer.Context,
    preset: Annotated[
        str | None, typer.Option(help="smoke (every arm, tiny, minutes) or demo; options given override it")
    ] = None,
    corpus: CorpusOpt = None,
    teacher: TeacherOpt = None,
    workdir: WorkdirOpt = None,
    target: Annotated[
        list[str] | None, typer.Option(help="Documents to judge the students on (never trained on); repeatable")
    ] = None,
    alpha: Annotated[str | None, typer.Option(help="Fraction(s) to keep: 0.5, or a sweep 0.3,0.5,0.7")] = None,
    arms: Annotated[
        str | None,
        typer.Option(
            help="Comma list of miniplm, uniform, full, teacher_ppl, reference_ppl, kd (the default), the modes "
            "miniplm_strata (per source) and miniplm_sampled (with --temperature), and the checks miniplm_alt_ref, "
            "bottom, control"
        ),
    ] = None,
    control_source: Annotated[
        list[str] | None, typer.Option(help="A corpus file of target-like text for the control arm; repeatable")
    ] = None,
    learning_rates: Annotated[
        str | None, typer.Option(help="Learning rates to tune on the uniform arm (1e-3,3e-3)")
    ] = None,
    student_tokenizer: Annotated[
        str | None, typer.Option(help="train:N (a BPE of N tokens fitted on the pool), a tokenizer path, or 'teacher'")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm (3); seed k of every arm starts alike")] = None,
    band: Annotated[str | None, typer.Option(help="Perplexity band of single-model selection: low, mid, high")] = None,
    kd_ratio: Annotated[float | None, typer.Option(help="r in (1 - r) LM + r KD for Vanilla KD (0.5)")] = None,
    temperature: Annotated[
        float | None, typer.Option(help="The miniplm_sampled arm's temperature: draws ~ exp(score / T) (0.5)")
    ] = None,
    max_eval_documents: Annotated[
        int | None, typer.Option(help="Most documents per evaluation set, target and held-out (2000)")
    ] = None,
    lm_eval_tasks: Annotated[
        str | None, typer.Option(help="lm-evaluation-harness tasks, comma-separated (needs miniplm[lmeval])")
    ] = None,
    lm_eval_include: Annotated[str | None, typer.Option(help="A folder of lm-eval task YAMLs")] = None,
    lm_eval_limit: Annotated[int | None, typer.Option(help="Documents per lm-eval task, at most")] = None,
    reference: Annotated[str, typer.Option(help="'train' or a checkpoint sharing the teacher's tokenizer")] = "train",
    max_len: MaxLenOpt = 1024,
    text_column: TextColumnOpt = "text",
    reference_fraction: ReferenceFractionOpt = None,
    heldout_fraction: HeldoutFractionOpt = 0.02,
    seed: SeedOpt = 0,
    accept_weak_reference: Annotated[
        bool, typer.Option(help="Go on with a reference no better than a unigram model")
    ] = False,
    student_steps: Annotated[
        int | None, typer.Option(help="Steps of every arm (default: one pass over the kept data)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    wait: WaitOpt = True,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The paper's comparison on your corpus: the same student, the same compute, on Difference Sampling's data and
    on each baseline's; a report with every arm's losses over seeds and the difference to a uniform sample."""
    from pydantic import ValidationError

    from miniplm.config import ExperimentConfig
    from miniplm.experiment.demo import PRESETS

    if preset is not None and preset not in PRESETS:
        err.print(f"[red]error:[/red] unknown preset {preset!r}: use {' or '.join(PRESETS)}")
        raise typer.Exit(2)
    base, exp = None, ExperimentConfig()
    if preset is not None:
        preset_config, exp = PRESETS[preset](workdir or Path(f"miniplm-{preset}"))
        base = preset_config.model_dump(mode="json")
    # --alpha here is a list (a sweep); the experiment selects at each alpha itself
    # (--temperature here is the sampled arm's, not the pipeline's selection)
    cfg = build_config(ctx, config, {k: v for k, v in locals().items() if k not in ("alpha", "temperature")}, base)
    if base is None and config is None and student_steps is None:
        # students that learn: 10 tokens per parameter (several passes over a small pool's kept data)
        cfg.student.train.max_steps = None
        cfg.student.train.tokens_per_parameter = 10
    given = {
        "alphas": floats(alpha) if alpha else None,
        "arms": [a.strip() for a in arms.split(",") if a.strip()] if arms else None,
        "control_sources": control_source,
        "learning_rates": floats(learning_rates) if learning_rates else None,
        "seeds": seeds,
        "perplexity_band": band,
        "kd_ratio": kd_ratio,
        "temperature": temperature,
        "target_paths": target,
        "max_eval_documents": max_eval_documents,
        "lm_eval_tasks": [t.strip() for t in lm_eval_tasks.split(",") if t.strip()] if lm_eval_tasks else None,
        "lm_eval_include": lm_eval_include,
        "lm_eval_limit": lm_eval_limit,
    }
    try:
        exp = ExperimentConfig.model_validate(exp.model_dump() | {k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid parameters: {one_line(exc)}")
        raise typer.Exit(2) from exc
    run_and_report(lambda: run_experiment(cfg, exp), json_output, print_experiment)
