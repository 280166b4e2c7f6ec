"""The report as Markdown: the regime first, then per arm its figures and verdict, the checks, the selection's
composition, the reference and the tuning. It says what report.json says.
"""

from __future__ import annotations

import math
from pathlib import Path


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sci(value: float) -> str:
    return f"{value:.3g}"


def _regime(report: dict, block: dict, alpha: str) -> list[str]:
    """What training regime the students were in: tokens per parameter, passes, and their loss beside what word
    counts of their own data reach, on the same tokens."""
    main = report["main_evaluation"]
    lines = [
        *_sizes(report),
        "",
        f"| arm | tokens / parameter | passes over its data | final train loss | {main} loss | {main} - train "
        f"| unigram of its data | bigram of its data | below unigram | {main} nats/byte | a token worth (uniform "
        "tokens) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in block["arms"]:
        ev, grams = arm["evals"].get(main, {}), arm.get("ngram", {}).get(main, {})
        below = grams["unigram"] - ev["mean"] if grams and ev else None
        train = arm.get("final_train_loss")
        gap = ev["mean"] - train if ev and train is not None else None
        flag = " (too young)" if arm.get("too_young") else ""
        lines.append(
            f"| {arm['arm']}{flag} | {arm['tokens_per_parameter']:.1f} | {arm['passes']:.2f} | {_num(train)} "
            f"| {_num(ev.get('mean'))} | {_num(gap, 3)} | {_num(grams.get('unigram'))} | {_num(grams.get('bigram'))} "
            f"| {_num(below, 3)} | {_num(arm.get('nats_per_byte', {}).get(main))} "
            f"| {_efficiency(arm.get('data_efficiency')) if arm['arm'] != 'uniform' else '1'} |"
        )
    lines += ["", "A loss far below on the training data than on the evaluation set means the students memorize their "
              "data (many passes over it); the last column is read off the loss curves: the uniform sample's tokens "
              "one token of the arm's data is worth, with a 95% interval over the paired seeds."]  # fmt: skip
    budget = (report.get("training_budget") or {}).get(alpha)
    if budget and budget.get("capped"):
        lines += ["", budget["note"]]
    multiplier = block.get("token_multiplier")
    if multiplier and not block.get("too_young"):
        lines += ["", f"Read off the loss curves on `{main}`, a token of Difference Sampling's data is worth "
                  f"{_efficiency(multiplier)} tokens of the uniform sample's."]  # fmt: skip
    return lines


def _efficiency(read: dict | None) -> str:
    if not read:
        return "-"
    if read.get("multiplier") is not None:
        text = f"{read['multiplier']:.2f}"
        if read.get("ci_low") is not None:
            text += f" [{read['ci_low']:.2f}, {read['ci_high']:.2f}]"
        return text
    if read.get("at_least"):
        return f"at least {read['at_least']:.1f} (reached before the first evaluation)"
    return f"at most {read['at_most']:.2f} (reached before the first evaluation)"


def _sizes(report: dict) -> list[str]:
    """Student and reference side by side, outside the embedding (what the transformer itself holds)."""
    student, ref = report["student"], report.get("reference") or {}
    lines = [
        f"Students: {student['parameters']:,} parameters ({student.get('non_embedding_parameters', 0):,} outside the "
        f"embedding and head), vocabulary {student.get('vocab_size', 0):,} ({student.get('tokenizer_kind', '')}); "
        f"a uniform guess over it is {_num(student.get('uniform_loss'), 3)} nats/token."
    ]
    if ref.get("non_embedding_parameters") is not None:
        relation = "larger than" if student.get("non_embedding_parameters", 0) > ref["non_embedding_parameters"] else (
            "no larger than")
        lines.append(
            f"Reference: {ref['parameters']:,} parameters ({ref['non_embedding_parameters']:,} outside the embedding "
            f"and head): the student is {relation} the reference outside the embedding (the paper's students, 200M "
            "and up, are all larger than its 104M reference)."
        )
    return lines


def _interval(diff: dict | None) -> str:
    if not diff:
        return "-"
    text = f"{diff['diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
    if diff.get("seed_ci_low") is not None:
        text += f" seeds [{diff['seed_ci_low']:+.4f}, {diff['seed_ci_high']:+.4f}]"
    return text


def _kept_by_source(selection: dict | None) -> list[str]:
    """Where Difference Sampling took its data from: each source's share of the pool and of what was kept."""
    rows = (selection or {}).get("by_source") or []
    if not rows:
        return []
    pool, kept = sum(r["candidate_tokens"] for r in rows) or 1, sum(r["kept_tokens"] for r in rows) or 1
    lines = ["What Difference Sampling kept, per source (teacher tokens):", "",
             "| source | candidates | share of the pool | kept | share of the kept data | kept of its candidates |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {Path(r['source']).name} | {r['candidates']:,} | {100 * r['candidate_tokens'] / pool:.1f}% | "
            f"{r['kept']:,} | {100 * r['kept_tokens'] / kept:.1f}% | "
            f"{100 * r['kept_tokens'] / max(1, r['candidate_tokens']):.0f}% |"
        )
    return lines + [""]


def _reference_agreement(selection: dict | None) -> list[str]:
    """The ablation's first answer, before any student trains: how much of the selection the reference size decides."""
    agreement = (selection or {}).get("reference_agreement")
    if not agreement or not agreement["kept"]:
        return []
    both = agreement["kept_by_both"] / agreement["kept"]
    return [f"With the other reference size, Difference Sampling keeps {agreement['kept_by_both']:,} of the same "
            f"{agreement['kept']:,} instances ({100 * both:.0f}%); the two scores' rank correlation (Spearman) over "
            f"{agreement['candidates']:,} candidates is {_num(agreement['spearman'], 3)}. The "
            "`miniplm_alt_ref` rows below show what its students make of the difference.", ""]  # fmt: skip


def band_names(edges: list[float]) -> list[str]:
    """top 30%, 30-50%, 50-70%, bottom 30% for the edges 0.3, 0.5, 0.7."""
    pct = [round(100 * e) for e in edges]
    if not pct:
        return ["all"]
    return [f"top {pct[0]}%"] + [f"{a}-{b}%" for a, b in zip(pct, pct[1:], strict=False)] + [f"bottom {100 - pct[-1]}%"]


def _score_bands_section(report: dict) -> list[str]:
    """Which sources each band of the ranking holds: why a selection keeps what it keeps."""
    bands = report.get("score_bands") or {}
    rows = bands.get("rows") or []
    if not rows:
        return []
    names, sources = band_names(bands["edges"]), sorted({r["source"] for r in rows})
    lines = ["What each band of the ranking holds: share of the band's teacher tokens per source, and the band's mean "
             "score (teacher minus reference log-prob, nats/token):", "",
             "| band | " + " | ".join(Path(s).name for s in sources) + " | mean score |",
             "|" + "---|" * (len(sources) + 2)]  # fmt: skip
    for band, name in enumerate(names):
        in_band = {r["source"]: r for r in rows if r["band"] == band}
        tokens = sum(r["tokens"] for r in in_band.values())
        if not tokens:
            continue
        instances = sum(r["instances"] for r in in_band.values())
        score = sum(r["score"] * r["instances"] for r in in_band.values()) / instances
        shares = [f"{100 * in_band[s]['tokens'] / tokens:.1f}%" if s in in_band else "-" for s in sources]
        lines.append(f"| {name} | " + " | ".join(shares) + f" | {score:.3f} |")
    return lines + [""]


def _reference_section(report: dict) -> list[str]:
    ref = report.get("reference") or {}
    lines = []
    if ref.get("candidates"):
        lines += ["Reference sizes tried on D_ref (the lowest validation loss kept):", "",
                  "| reference | parameters | steps | best step | passes | validation loss | kept |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in ref["candidates"]:
            kw = c["arch"]["kwargs"]
            lines.append(
                f"| {kw.get('hidden_size')} wide, {kw.get('num_hidden_layers')} layers | {c['parameters']:,} | "
                f"{c['steps']} | {c['best_step']} | {_num(c.get('passes'), 2)} | {_num(c['selection_loss'])} | "
                f"{'yes' if c.get('chosen') else ''} |"
            )
        lines.append("")
    if ref.get("validation_gap"):
        lines += ["Teacher and reference on D_ref's validation slice, per source (mean log-prob, nats/token; the gap "
                  "is "
                  "what Difference Sampling's score rewards):", "",
                  "| source | instances | teacher | reference | gap |", "|---|---|---|---|---|"]  # fmt: skip
        for g in ref["validation_gap"]:
            lines.append(f"| {Path(g['source']).name} | {g['instances']} | {g['teacher_logp']:.3f} | "
                         f"{g['reference_logp']:.3f} | {g['gap']:+.3f} |")  # fmt: skip
        lines.append("")
    return lines


def _tuning_section(report: dict) -> list[str]:
    tuning = report.get("tuning")
    if not tuning:
        return []
    lines = ["Learning rate, tuned on the uniform arm alone (seed 0), judged on held-out pool documents; every arm "
             "trains with the one chosen:", "", "| learning rate | held-out loss | chosen |",
             "|---|---|---|"]  # fmt: skip
    for t in tuning["tried"]:
        lines.append(f"| {t['learning_rate']:g} | {_num(t['heldout_loss'])} | {'yes' if t['chosen'] else ''} |")
    return lines + [""]


def _precision(report: dict) -> str:
    precision = report.get("score_precision") or {}
    return f"{precision['dtype']} ({precision['chosen_by']})" if precision else "the run's precision"


def markdown(report: dict, images: dict[str, str]) -> str:
    main = report["main_evaluation"]
    ref = report.get("reference") or {}
    lines = [
        f"# MiniPLM experiment `{report['experiment_id']}`",
        "",
        *[f"**{block['verdict']}**" for block in report["alphas"].values()],
        "",
        f"Work directory `{report['workdir']}`; teacher `{report['teacher']['spec']}` "
        f"({report['teacher']['parameters']:,} parameters), scored in {_precision(report)}; reference: validation loss "
        f"{_num(ref.get('validation_loss'), 3)} nats/token vs a unigram model {_num(ref.get('unigram_loss'), 3)} and a "
        f"uniform guess {_num(ref.get('uniform_loss'), 3)}; student {report['student']['parameters']:,} parameters, "
        f"{report['student']['batch_size']} sequences of {report['student']['block_size']} tokens per step, "
        f"learning rate {report['student']['learning_rate']:g}. "
        f"Main evaluation: `{main}` ({report['eval_set']['documents'].get(main, 0)} documents). Losses are nats/token "
        "(lower is better), mean ± standard deviation over seeds; the difference to the uniform arm pairs seed k with "
        "seed k; its intervals are a 95% bootstrap over documents and a 95% t interval over the paired seeds, and a "
        "difference counts only when both exclude zero.",
        "",
        *_reference_section(report),
        *_tuning_section(report),
        *_score_bands_section(report),
    ]
    for alpha, block in report["alphas"].items():
        sets = list(dict.fromkeys(name for arm in block["arms"] for name in arm["evals"]))
        selection = report["selections"].get(alpha)
        lines += [f"## alpha = {alpha}", "", *_kept_by_source(selection), *_reference_agreement(selection),
                  *_regime(report, block, alpha), ""]  # fmt: skip
        if block.get("checks"):
            lines += [f"* {c}" for c in block["checks"]] + [""]
        head = ["arm", "seeds", "steps", "tokens", "FLOPs", "passes", "train s"] + sets + [f"vs uniform ({main})"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm in block["arms"]:
            diff = arm["vs_uniform"].get(main)
            cells = [
                arm["title"],
                str(arm["seeds"]),
                str(arm["steps"]),
                f"{arm['tokens_trained']:,.0f}",
                _sci(arm["flops"]),
                _num(arm["passes"], 2),
                _num(arm["train_seconds"], 0),
            ]
            cells += [
                f"{arm['evals'][s]['mean']:.4f} ± {arm['evals'][s]['std']:.4f}" if s in arm["evals"] else "-"
                for s in sets
            ]
            cells.append(_interval(diff))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "What each arm trained on (instances and teacher tokens per source):", ""]
        sources = sorted({c["source"] for arm in block["arms"] for c in arm["composition"]})
        lines += ["| arm | " + " | ".join(Path(s).name for s in sources) + " |", "|" + "---|" * (len(sources) + 1)]
        for arm in block["arms"]:
            by = {c["source"]: c for c in arm["composition"]}
            total = sum(c["tokens"] for c in arm["composition"]) or 1
            lines.append(
                f"| {arm['arm']} | "
                + " | ".join(
                    f"{by[s]['instances']} / {by[s]['tokens']:,} ({100 * by[s]['tokens'] / total:.0f}%)"
                    if s in by
                    else "-"
                    for s in sources  # fmt: skip
                )
                + " |"
            )
        lines.append("")
    if report.get("lm_eval_unavailable"):
        lines += ["lm-evaluation-harness tasks that could not run here:", ""]
        lines += [f"* `{task}`: {why}" for task, why in report["lm_eval_unavailable"].items()] + [""]
    if report.get("skipped_arms"):
        lines += ["Arms that could not run:", ""] + [f"* `{a}`: {why}" for a, why in report["skipped_arms"].items()]
        lines.append("")
    lines += [
        "## Plots",
        "",
        f"![{main} loss by arm]({images['main']})",
        "",
        f"![evaluation loss during training]({images['curves']})",
        "",
        f"![scores by source]({images['scores']})",
        "",
    ]
    return "\n".join(lines) + "\n"
