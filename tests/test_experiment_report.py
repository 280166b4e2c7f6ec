"""The report's reading of the figures: the token multiplier off two loss curves, and a verdict that refuses to
judge students too young to tell data apart."""

import pytest

from miniplm.experiment_report import token_multiplier, verdict


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


def test_a_verdict_needs_students_that_learned():
    diff = {"diff": -0.05, "ci_low": -0.08, "ci_high": -0.02, "seeds": 3, "documents": 300}
    assert "beat the uniform sample" in verdict(diff, "target", 0.5)
    young = verdict(diff, "target", 0.5, too_young=["miniplm"])
    assert "too young to judge the data" in young and "beat the" not in young and "did worse" not in young
    assert "within noise" in verdict({**diff, "ci_high": 0.01}, "target", 0.5)
    assert "did worse" in verdict({**diff, "diff": 0.05, "ci_low": 0.02, "ci_high": 0.08}, "target", 0.5)
