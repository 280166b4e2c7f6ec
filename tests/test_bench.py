import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> tuple[list[str], dict]:
    result = subprocess.run(
        [sys.executable, "bench/score.py", "--reference-instances", "2", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_score_benchmark_prints_its_figures():
    """bench/score.py runs as documented and ends with the JSON object the issue names (figures not judged here).

    The dtype is pinned: `auto` picks bfloat16 on CPUs that multiply it faster, and the accuracy asserted here
    is float32's."""
    lines, figures = run_bench("--tokens", "2500", "--dtype", "float32")
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
    assert figures["dtype"] == "float32"


def test_score_benchmark_in_bfloat16_stays_within_its_tolerance():
    """bfloat16 weights and activations (head in float32): within the scorer's bfloat16 tolerance of float64, on
    any CPU (emulated where the CPU has no bfloat16 instructions, hence the short run)."""
    _, figures = run_bench("--tokens", "300", "--dtype", "bfloat16", "--skip-naive")
    assert figures["dtype"] == "bfloat16"
    assert figures["max_abs_diff_vs_float64"] < 2e-2


def test_train_benchmark_prints_its_figures():
    """bench/train.py runs small and its two losses give the same gradients (its figures are not judged here)."""
    result = subprocess.run(
        [sys.executable, "bench/train.py", "--hidden", "32", "--layers", "1", "--batch", "2", "--block", "64",
         "--vocab", "3000", "--steps", "1", "--compare-plain"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["tokens_per_s"] > 0 and figures["plain_tokens_per_s"] > 0
    assert figures["speedup"] == round(figures["tokens_per_s"] / figures["plain_tokens_per_s"], 2)
    assert figures["max_grad_diff"] < 1e-5
    assert figures["fraction_of_peak"] > 0
    assert abs(figures["fraction_of_peak"] - figures["gflops"] / figures["peak_gflops_fp32"]) < 0.01


def test_the_gpu_script_runs_its_measurements_on_tiny_models():
    """bench/gpu.py --tiny: every figure the device run reports, on whatever device is here (a CPU in CI), so the
    script is known to run before a GPU is lent for it."""
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    (scoring,) = figures["scoring"]
    assert scoring["attention"] == "per-instance sdpa" and scoring["varlen_fallback"] is None
    assert scoring["packed_vs_padded_max_abs_diff"] < 1e-5  # float32 on a CPU: the two layouts agree exactly
    assert figures["agreement_within_bf16_tolerance"]
    rate = scoring["tokens_per_s"]
    assert scoring["fraction_of_peak"] == round(2 * scoring["parameters"] * rate / figures["peak_flops"], 3)
    training = figures["training"]
    assert training["tokens_per_s"] > 0 and training["autocast_bf16"] is False  # a CPU trains in float32


def test_the_select_benchmark_times_the_papers_selection_and_both_modes(tmp_path):
    """bench/select.py runs small: the paper's top alpha, the strata and the temperature draw, each by the product's
    own functions (their figures are not judged here; the counts are)."""
    result = subprocess.run(
        [sys.executable, "bench/select.py", "--rows", "20000", "--dir", str(tmp_path), "--baseline-max-rows", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 20000 and figures["baseline_seconds"] is None
    import duckdb

    scores = f"'{tmp_path}/scored-20000.parquet'"
    finite = duckdb.sql(f"select count(*) from {scores} where isfinite(score)").fetchall()[0][0]
    assert figures["modes"]["temperature"]["kept"] == finite // 2  # alpha 0.5 of the finite candidates
    per_source = duckdb.sql(
        f"select sum(n // 2) from (select source, count(*) as n from {scores} where isfinite(score) group by source)"
    ).fetchall()[0][0]
    assert figures["modes"]["strata"]["kept"] == per_source
    for mode in figures["modes"].values():
        assert mode["seconds"] > 0 and mode["vs_top_alpha"] > 0
