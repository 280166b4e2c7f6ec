"""The CLI as a user runs it: separate processes, a real ephemeral Prefect server, JSON on the last line."""

import json
import os
import subprocess
import sys

import pytest

from tests.cli_runs import miniplm
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")  # the CLI processes report to the session's server

REQUIRED = {
    "documents_total",
    "documents_new",
    "instances_total",
    "instances_scored_teacher",
    "instances_scored_reference",
    "selected",
    "nonfinite",
    "quarantined",
}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, models):
    tmp = tmp_path_factory.mktemp("cli")
    texts = corpus_texts(60, seed=3)
    a = write_jsonl(tmp / "a.jsonl", texts[:40])
    b = write_jsonl(tmp / "b.jsonl", texts[40:] + [""])
    wd = tmp / "wd"
    args = [
        "run",
        "--corpus",
        str(a),
        "--corpus",
        str(b),
        "--teacher",
        str(models["teacher"]),
        "--reference",
        "train",
        "--alpha",
        "0.3",
        "--max-len",
        "40",
        "--workdir",
        str(wd),
        "--reference-fraction",
        "0.2",
        "--accept-weak-reference",  # tiny corpora make weak references (see test_reference.py)
        "--reference-steps",
        "5",
        "--no-students",  # the students' path is the flow's (tests/flows/test_pipeline_flow.py)
        "--json",
    ]
    result = miniplm(*args)
    return wd, args, json.loads(result.stdout.strip().splitlines()[-1])


def test_run_json_summary(cli_run):
    _, _, summary = cli_run
    assert set(summary) >= REQUIRED
    assert summary["quarantined"] == 1
    assert summary["documents_new"] == summary["documents_total"] > 0
    assert summary["instances_scored_teacher"] == summary["candidates"]
    assert summary["selected"] == int(0.3 * (summary["candidates"] - summary["nonfinite"]))


def test_rerun_scores_nothing(cli_run):
    _, args, _ = cli_run
    again = json.loads(miniplm(*args).stdout.strip().splitlines()[-1])
    assert again["documents_new"] == 0
    assert again["instances_scored_teacher"] == again["instances_scored_reference"] == 0


def test_sql_formats(cli_run):
    wd, _, summary = cli_run
    rows = json.loads(
        miniplm(
            "sql", "--workdir", str(wd), "--format", "json", "select count(*) as n, min(rank) as first from selected"
        ).stdout
    )
    assert rows == [{"n": summary["selected"], "first": 1}]
    csv_out = miniplm("sql", "--workdir", str(wd), "--format", "csv", "select alpha, n_selected from selections").stdout
    assert csv_out.splitlines() == ["alpha,n_selected", f"0.3,{summary['selected']}"]
    table = miniplm("sql", "--workdir", str(wd), "select instance_id, score from scored limit 2").stdout
    assert "instance_id" in table and "(2 rows)" in table


def test_sql_refuses_writes_and_bad_sql(cli_run):
    wd, _, _ = cli_run
    result = miniplm("sql", "--workdir", str(wd), "delete from selections", check=False)
    assert result.returncode == 1 and "read-only" in result.stderr
    result = miniplm("sql", "--workdir", str(wd), "select nope from scored", check=False)
    assert result.returncode == 1 and "nope" in result.stderr


def test_sql_shell_reads_statements_until_quit(cli_run):
    wd, _, summary = cli_run
    shell = subprocess.run(
        [sys.executable, "-m", "flows.cli", "sql", "--workdir", str(wd), "--format", "csv"],
        input="select count(*) as n\nfrom selected;\n.quit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.returncode == 0
    assert f"n\n{summary['selected']}" in shell.stdout


def test_status(cli_run):
    wd, _, summary = cli_run
    info = json.loads(miniplm("status", "--workdir", str(wd), "--json").stdout)
    assert info["selected"] == summary["selected"] and len(info["sources"]) == 2


def test_run_reports_bad_input_clearly(tmp_path, models):
    result = miniplm(
        "run",
        "--corpus",
        str(tmp_path / "missing.jsonl"),
        "--teacher",
        str(models["teacher"]),
        "--workdir",
        str(tmp_path / "wd"),
        "--json",
        check=False,
    )
    assert result.returncode != 0
    assert "missing.jsonl: no such file or directory" in result.stderr


def test_prepare_then_run_finds_the_corpus_prepared(tmp_path, models):
    """`prepare` on a CPU node, `run` with the same settings later: the data path is not done twice."""
    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_texts(50, seed=4))
    common = ["--corpus", str(corpus), "--teacher", str(models["teacher"]), "--workdir", str(tmp_path / "wd"),
              "--max-len", "40", "--json"]  # fmt: skip
    prepared = json.loads(miniplm("prepare", *common).stdout.strip().splitlines()[-1])
    assert prepared["documents_total"] == 50 and prepared["instances_total"] > 50 and prepared["shards"] == 1
    assert set(prepared["steps_run"]) >= {"ingest", "tokenize", "split"}
    # the prepared corpus is queryable before anything is scored
    rows = miniplm("sql", "--workdir", str(tmp_path / "wd"), "--format", "json", "select count(*) as n from documents")
    assert json.loads(rows.stdout) == [{"n": 50}]
    ran = json.loads(
        miniplm(
            "run", *common, "--no-students", "--accept-weak-reference", "--reference-steps", "3"
        ).stdout.splitlines()[-1]
    )
    assert {"ingest", "tokenize", "split"} <= set(ran["steps_cached"])
    assert ran["documents_total"] == 50 and ran["instances_scored_teacher"] == ran["candidates"] > 0


def test_options_override_a_config_file_and_the_file_alone_is_enough(tmp_path, models):
    from miniplm.config import (
        CorpusConfig,
        PipelineConfig,
        ReferenceConfig,
        SelectConfig,
        SplitConfig,
        StudentConfig,
        TrainConfig,
    )

    corpus = write_jsonl(tmp_path / "c.jsonl", corpus_texts(40, seed=6))
    cfg = PipelineConfig(
        workdir=str(tmp_path / "wd"),
        corpus=CorpusConfig(paths=[str(corpus)]),
        teacher=str(models["teacher"]),
        reference=ReferenceConfig(train=TrainConfig(max_steps=3), accept_weak=True),
        split=SplitConfig(reference_fraction=0.3),
        student=StudentConfig(enabled=False),
    )
    cfg.select.alpha = 0.5
    path = tmp_path / "pipeline.json"
    path.write_text(cfg.model_dump_json())
    alone = json.loads(miniplm("run", "--config", str(path), "--json").stdout.splitlines()[-1])
    assert alone["alpha"] == 0.5 and alone["students"] == {}
    over = json.loads(miniplm("run", "--config", str(path), "--alpha", "0.3", "--json").stdout.splitlines()[-1])
    assert over["alpha"] == 0.3 and over["selected"] == int(0.3 * (over["candidates"] - over["nonfinite"]))
    assert over["instances_scored_teacher"] == 0  # the file's other settings held: nothing new to score
    # which steps a run would find done: of the last run's configuration (alpha 0.3 from the command line), of another
    wd = str(tmp_path / "wd")
    every = dict.fromkeys(("ingest", "tokenize", "split", "reference", "precision", "score", "select"), "done")
    last = json.loads(miniplm("status", "--workdir", wd, "--json").stdout)["steps"]
    assert last == every | {"students": "off", "export": "off"}
    other = tmp_path / "other.json"
    other.write_text(cfg.model_copy(update={"select": SelectConfig(alpha=0.7)}).model_dump_json())
    asked = json.loads(miniplm("status", "--workdir", wd, "--config", str(other), "--json").stdout)["steps"]
    assert asked == last | {"select": "to do"}
    grown = write_jsonl(tmp_path / "d.jsonl", corpus_texts(5, seed=9))
    other.write_text(cfg.model_copy(update={"corpus": CorpusConfig(paths=[str(corpus), str(grown)])}).model_dump_json())
    asked = json.loads(miniplm("status", "--workdir", wd, "--config", str(other), "--json").stdout)["steps"]
    assert asked == dict.fromkeys(every, "to do") | {"students": "off", "export": "off"}
    # the selection modes from the command line: a selection of their own, recorded with its mode
    args = ["--strata", "source", "--temperature", "0.5", "--select-seed", "3"]
    mode = json.loads(miniplm("run", "--config", str(path), *args, "--json").stdout.splitlines()[-1])
    assert (mode["strata"], mode["temperature"]) == ("source", 0.5) and mode["instances_scored_teacher"] == 0
    assert mode["selection_id"] not in {alone["selection_id"], over["selection_id"]}
    rows = miniplm("sql", "select selection_id, alpha, strata, temperature, seed from selections order by created_at",
                   "--workdir", str(tmp_path / "wd"), "--format", "json").stdout  # fmt: skip
    assert [tuple(r.values()) for r in json.loads(rows)] == [
        (alone["selection_id"], 0.5, "none", None, None),
        (over["selection_id"], 0.3, "none", None, None),
        (mode["selection_id"], 0.5, "source", 0.5, 3),
    ]
    # exported, the kept corpus says which mode chose it
    out = tmp_path / "export"
    header = json.loads(miniplm("export", "--to", str(out), "--workdir", str(tmp_path / "wd"), "--json").stdout)
    assert header["selection"]["selection_id"] == mode["selection_id"] and header["instances"] == mode["selected"]
    lineage = json.loads((out / "export.json").read_text())["selection"]
    assert (lineage["strata"], lineage["temperature"], lineage["seed"]) == ("source", 0.5, 3)
    bad = miniplm("run", "--config", str(path), "--strata", "document", check=False)
    assert bad.returncode == 2 and "select.strata" in bad.stderr


def test_a_run_waits_for_the_run_that_holds_the_workdir_or_stops_with_no_wait(tmp_path, models):
    """Another run holds the work directory: `--no-wait` stops at once naming it; without, the run says whom it waits
    for, waits, and goes on when the holder ends (here killed: its lock is taken over)."""
    from tests.cli_runs import hold_in_another_process

    texts = corpus_texts(30, seed=5)
    a = write_jsonl(tmp_path / "a.jsonl", texts)
    wd = tmp_path / "wd"
    args = ["run", "--corpus", str(a), "--teacher", str(models["teacher"]), "--max-len", "40", "--workdir", str(wd),
            "--reference-fraction", "0.3", "--accept-weak-reference", "--reference-steps", "3", "--no-students",
            "--json"]  # fmt: skip
    first = hold_in_another_process(wd)
    try:
        stopped = miniplm(*args, "--no-wait", check=False)
        assert stopped.returncode == 1 and stopped.stdout == ""
        lines = stopped.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and f"the-first-run (pid {first.pid} on" in lines[0]
        assert not (wd / "documents").exists()  # it stopped before doing anything
        second = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        line = second.stderr.readline()
        while line and "waiting" not in line:
            line = second.stderr.readline()
        assert "is in use by run the-first-run" in line and second.poll() is None
    finally:
        first.kill()
        first.wait()
    out, errors = second.communicate(timeout=600)
    assert second.returncode == 0, errors
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["instances_scored_teacher"] == summary["candidates"] > 0


def test_a_killed_cli_leaves_no_prefect_server_behind(tmp_path, models):
    """SIGKILL gives the CLI no chance to stop what it started: its Prefect server must die with it."""
    import psutil

    from tests.cli_runs import hold_in_another_process

    corpus = write_jsonl(tmp_path / "a.jsonl", corpus_texts(10))
    wd = tmp_path / "wd"
    holder = hold_in_another_process(wd)  # keeps the run waiting, its server up
    try:
        cli = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--corpus", str(corpus), "--teacher", str(models["teacher"]),
             "--workdir", str(wd)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},  # it starts a server of its own
        )  # fmt: skip
        line = cli.stderr.readline()
        while line and "waiting" not in line:
            line = cli.stderr.readline()
        servers = [p for p in psutil.Process(cli.pid).children(recursive=True) if "uvicorn" in " ".join(p.cmdline())]
        assert len(servers) == 1
        cli.kill()
        cli.wait()
        gone, alive = psutil.wait_procs(servers, timeout=20)
        assert alive == [] and len(gone) == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_server_that_cannot_start_is_one_error_line_and_its_output_stays_in_its_log(tmp_path, models):
    """The CLI's own server writes to a log beside its database, never to the CLI's stderr (where its lines would
    break the one-line answers); when it cannot start, the CLI says so in one line, with the log's last line."""
    from tests.cli_runs import one_error_line

    corpus = write_jsonl(tmp_path / "a.jsonl", corpus_texts(10))
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path}/no-such-folder/prefect.db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--corpus", str(corpus), "--teacher", str(models["teacher"]),
         "--workdir", str(tmp_path / "wd"), "--no-students"], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    line = one_error_line(result)
    log = home / "miniplm-server.log"
    assert "the local Prefect server exited with code" in line and str(log) in line
    assert "Application startup failed" in log.read_text() and "Application startup failed" in line
    assert "uvicorn" not in result.stderr.replace(line, "")  # nothing of the server's own output elsewhere


def test_report_has_the_counts_histogram_and_extremes(cli_run):
    wd, _, summary = cli_run
    result = miniplm("report", "--workdir", str(wd))
    report = (wd / "report" / "report.md").read_text()
    png = (wd / "report" / "scores.png").read_bytes()
    assert str(wd / "report" / "report.md") in result.stdout and png.startswith(b"\x89PNG\r\n\x1a\n")
    for section in ("Where every document went", "Scores", "Top-scored", "Bottom-scored", "Reference LM", "Students"):
        assert f"## {section}" in report
    assert summary["selection_id"] in report
    bars = [line for line in report.splitlines() if line.startswith("| ") and " .. " in line]
    finite = int(miniplm("sql", "select count(*) from scored where isfinite(score)", "--workdir", str(wd), "--format",
                         "csv").stdout.splitlines()[1])  # fmt: skip
    assert sum(int(line.split("|")[2]) for line in bars) == finite > 0
    top = report.split("## Top-scored candidates")[1].splitlines()[4]
    assert float(top.split("|")[2]) == pytest.approx(summary["score_max"], abs=1e-4)
    assert json.loads((wd / "summary.json").read_text())["selection_id"] == summary["selection_id"]


def test_experiment_takes_an_alpha_sweep_and_its_checks_from_the_command_line(tmp_path, models):
    texts = corpus_texts(80, seed=5)
    a = write_jsonl(tmp_path / "a.jsonl", texts[:35])
    b = write_jsonl(tmp_path / "b.jsonl", texts[35:70])
    target = write_jsonl(tmp_path / "target.jsonl", texts[70:])
    result = miniplm(
        "experiment", "--corpus", str(a), "--corpus", str(b), "--teacher", str(models["teacher"]),
        "--workdir", str(tmp_path / "wd"), "--target", str(target), "--max-len", "40", "--reference-fraction", "0.2",
        "--heldout-fraction", "0.1", "--accept-weak-reference", "--student-steps", "4", "--seeds", "1",
        "--alpha", "0.3,0.7", "--arms", "miniplm,uniform,control", "--control-source", "a.jsonl",
        "--learning-rates", "1e-3,1e-2", "--student-tokenizer", "train:300", "--json",
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(report["alphas"]) == ["0.3", "0.7"]
    assert [a["arm"] for a in report["alphas"]["0.3"]["arms"]] == ["miniplm", "uniform", "control"]
    assert [t["learning_rate"] for t in report["tuning"]["tried"]] == [1e-3, 1e-2]
    assert report["student"]["vocab_size"] <= 300 and "student-tokenizer" in report["student"]["tokenizer"]
    assert report["settings"]["control_sources"] == ["a.jsonl"]
    # the sweep's lines name the rate each student tries; each alpha's selection is announced once
    for rate in ("0.001", "0.01"):
        assert f"train-student uniform a=0.7 seed 0 lr {rate}: done" in result.stderr
    assert result.stderr.count("select: started") == 2
