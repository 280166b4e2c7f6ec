"""The report's reading of the figures: the token multiplier off two loss curves, and a verdict that refuses to
judge students too young to tell data apart."""

import numpy as np
import pytest

from miniplm.experiment.report.assemble import sensitivity_checks
from miniplm.experiment.report.statistics import token_multiplier, verdict


def test_token_multiplier_reads_the_curves_both_ways():
    uniform = [(100.0, 5.0), (200.0, 4.0), (300.0, 3.5), (400.0, 3.2)]
    # the arm ends at 3.5, the uniform arm reached 3.5 at 300 tokens of 400: its tokens are worth 0.75 of them
    worse = [(100.0, 5.2), (200.0, 4.3), (300.0, 3.8), (400.0, 3.5)]
    assert token_multiplier(worse, uniform)["multiplier"] == pytest.approx(0.75)
    # the arm reached the uniform arm's final 3.2 halfway between 200 and 300 tokens: 400 / 250 = 1.6
    better = [(100.0, 4.4), (200.0, 3.6), (300.0, 2.8), (400.0, 2.6)]
    assert token_multiplier(better, uniform)["multiplier"] == pytest.approx(1.6)
    # reached before the first evaluation: only a bound can be read
    far_better = [(100.0, 3.0), (200.0, 2.5), (300.0, 2.2), (400.0, 2.0)]
    assert token_multiplier(far_better, uniform) == {"multiplier": None, "at_least": 4.0}
    assert token_multiplier([], uniform) is None


def test_a_verdict_needs_students_that_learned_and_both_intervals():
    from miniplm.experiment.report.statistics import T_975

    diff = {"diff": -0.05, "ci_low": -0.08, "ci_high": -0.02, "seed_ci_low": -0.09, "seed_ci_high": -0.01,
            "seeds": 3, "documents": 300}  # fmt: skip
    assert "beat the uniform sample" in verdict(diff, "target", 0.5)
    young = verdict(diff, "target", 0.5, too_young=["miniplm"])
    assert "too young to judge the data" in young and "beat the" not in young and "did worse" not in young
    worse = {**diff, "diff": 0.05, "ci_low": 0.02, "ci_high": 0.08, "seed_ci_low": 0.01, "seed_ci_high": 0.09}
    assert "did worse" in verdict(worse, "target", 0.5)
    # undecided, and the seeds' interval is inside +-0.05: within noise, a verdict
    narrow = {**diff, "diff": -0.01, "ci_high": 0.01, "seed_ci_low": -0.04, "seed_ci_high": 0.03}
    assert "within noise" in verdict(narrow, "target", 0.5)
    # undecided, and the seeds' interval is wider: the experiment could not see an effect of that size (the
    # documents agree but the seeds do not, or neither does)
    for wide in ({**diff, "ci_high": 0.01}, {**diff, "seed_ci_high": 0.03}):
        said = verdict({**wide, "per_seed": [-0.09, 0.02, -0.02]}, "target", 0.5)
        assert "within noise" not in said and "could not see an effect of +-0.05 nats/token" in said
        assert "about 8 paired seeds would narrow it to that" in said
    # undecided, the seeds' interval narrower than +-0.05 but holding zero (an effect of that size would have shown):
    # not "could not see", but how many seeds would decide the difference seen
    per_seed = [-0.09, -0.05, -0.03, -0.02, -0.0025]
    mean, sd = abs(float(np.mean(per_seed))), float(np.std(per_seed, ddof=1))
    decide = next(n for n in range(2, 100) if T_975[n - 1] * sd / np.sqrt(n) < mean)
    assert decide == 6
    close = {**diff, "diff": -0.0385, "seed_ci_low": -0.0797, "seed_ci_high": 0.0027, "seeds": 5, "per_seed": per_seed}
    said = verdict(close, "target", 0.5)
    assert "not yet told apart" in said and "could not see" not in said and "within noise" not in said
    assert f"about {decide} paired seeds would decide it" in said
    one_seed = {**diff, "ci_high": 0.01, "seed_ci_low": None, "seed_ci_high": None, "seeds": 1, "per_seed": [-0.05]}
    said = verdict(one_seed, "target", 0.5)
    assert "one seed, so the students' own variation is not measured" in said and "at least two seeds" in said


def test_the_seeds_needed_bring_the_t_interval_inside_the_bound():
    from miniplm.experiment.report.statistics import T_975, seeds_needed

    per_seed = [-0.09, 0.02, -0.02]
    sd = float(np.std(per_seed, ddof=1))
    n = seeds_needed({"per_seed": per_seed})
    assert T_975[n - 1] * sd / np.sqrt(n) <= 0.05 < T_975[n - 2] * sd / np.sqrt(n - 1)
    assert n == 8
    assert seeds_needed({"per_seed": [0.01, 0.012]}) == 2  # already inside
    assert seeds_needed({"per_seed": [0.3]}) is None


def test_data_efficiency_is_read_per_paired_seed_with_an_interval(tmp_path):
    """Each seed's multiplier off its own two curves; the interval a t interval over their logarithms."""
    import json

    from miniplm.experiment.report.statistics import data_efficiency
    from miniplm.training.train_summary import TrainSummary

    def row(arm: str, seed: int, losses: list[float]) -> dict:
        path = tmp_path / f"{arm}-{seed}.json"
        history = [{"step": i, "tokens": 100.0 * (i + 1), "eval_loss": loss} for i, loss in enumerate(losses)]
        run = TrainSummary(model_dir="m", steps=len(losses), parameters=1, seconds=1.0, run_key={}, history=history)
        path.write_text(json.dumps(run.model_dump()))
        return {"arm": arm, "seed": seed, "summary_path": str(path)}

    uniform = [row("uniform", s, [5.0, 4.0, 3.5, 3.2]) for s in range(3)]
    # each seed's arm reaches the uniform arm's final 3.2 at 250, 300 and 200 tokens of 400: 1.6, 1.333 and 2.0
    arm = [row("miniplm", 0, [4.4, 3.6, 2.8, 2.6]), row("miniplm", 1, [4.6, 3.8, 3.2, 2.9]),
           row("miniplm", 2, [4.0, 3.2, 2.7, 2.5])]  # fmt: skip
    read = data_efficiency(arm, uniform)
    assert read["per_seed"] == pytest.approx([1.6, 4 / 3, 2.0]) and read["seeds_read"] == 3
    logs = np.log([1.6, 4 / 3, 2.0])
    half = 4.303 * np.std(logs, ddof=1) / np.sqrt(3)
    assert (read["ci_low"], read["ci_high"]) == pytest.approx((np.exp(logs.mean() - half), np.exp(logs.mean() + half)))
    assert read["ci_low"] < read["multiplier"] < read["ci_high"]
    assert data_efficiency(arm, []) is None


def test_the_seed_interval_is_a_t_interval_over_paired_seeds():
    import numpy as np
    import polars as pl

    from miniplm.experiment.report.statistics import paired_difference

    rows = []
    for seed, shift in enumerate((0.1, -0.3, 0.2)):
        for doc in range(5):
            base = 10.0 + doc
            rows += [{"arm": "uniform", "alpha": 0.5, "set": "target", "seed": seed, "doc_id": f"d{doc}",
                      "sum_nll": base, "n_predicted": 10},
                     {"arm": "miniplm", "alpha": 0.5, "set": "target", "seed": seed, "doc_id": f"d{doc}",
                      "sum_nll": base + 10 * shift * (doc + 1) / 3, "n_predicted": 10}]  # fmt: skip
    got = paired_difference(pl.DataFrame(rows), "miniplm", 0.5, "uniform", "target", 500)
    per_seed = [10 * s * sum(range(1, 6)) / 3 / 50 for s in (0.1, -0.3, 0.2)]
    assert got["per_seed"] == pytest.approx(per_seed)
    half = 4.303 * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert got["diff"] == pytest.approx(np.mean(per_seed))
    mean = np.mean(per_seed)
    assert (got["seed_ci_low"], got["seed_ci_high"]) == pytest.approx((mean - half, mean + half))


@pytest.mark.parametrize(
    ("seed_interval", "meaning"),
    [
        ((-0.55, -0.45), "separates target-like data from a uniform sample"),  # far beyond twice the width
        ((-0.73, -0.24), "separates data only coarsely"),  # decided, but by less than twice the width
        ((-1.38, +0.37), "cannot separate even target-like data"),  # the seeds' interval holds zero
    ],
)
def test_the_positive_control_says_how_well_the_experiment_separates_data(seed_interval, meaning):
    control = {"diff": -0.49, "ci_low": -0.52, "ci_high": -0.45, "seed_ci_low": seed_interval[0],
               "seed_ci_high": seed_interval[1]}  # fmt: skip
    (line,) = sensitivity_checks({"control": {"vs_uniform": {"target": control}}}, "target")
    assert line.startswith("positive control vs uniform: -0.4900") and meaning in line
