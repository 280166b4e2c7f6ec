import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_score_benchmark_prints_its_figures():
    """bench/score.py runs as documented and ends with the JSON object the issue names (figures not judged here)."""
    result = subprocess.run(
        [sys.executable, "bench/score.py", "--tokens", "2500", "--reference-instances", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    required = {
        "model", "params", "tokens", "naive_tokens_per_s", "tokens_per_s", "speedup", "peak_flops",
        "achieved_flops", "fraction_of_peak", "selection_jaccard_bf16_fp32",
    }  # fmt: skip
    assert required <= figures.keys()
    assert figures["tokens"] >= 2500 and figures["params"] > 0
    assert abs(figures["speedup"] - figures["tokens_per_s"] / figures["naive_tokens_per_s"]) < 0.011
    assert (
        abs(figures["achieved_flops"] - 2 * figures["params"] * figures["tokens_per_s"])
        < 1e-3 * figures["achieved_flops"]
    )
    assert figures["fraction_of_peak"] == round(figures["achieved_flops"] / figures["peak_flops"], 3)
    assert figures["max_abs_diff_vs_float64"] < 1e-5  # the scorer in float32 against the exact computation
    assert any(line.startswith("naive (input order") for line in lines)
