"""Bad models, bad sources, an empty corpus and a read-only work directory end in one `error:` line that names the
file, before any work is done on them, with no traceback and nothing recorded."""

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_runs import miniplm, one_error_line
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")  # the CLI processes report to the session's server


def run(tmp_path, corpus: Path, teacher: Path, workdir: Path | None = None) -> subprocess.CompletedProcess:
    return miniplm(
        "run", "--corpus", str(corpus), "--teacher", str(teacher), "--workdir", str(workdir or tmp_path / "wd"),
        "--max-len", "40", "--no-students", check=False,
    )  # fmt: skip


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "a.jsonl", corpus_texts(20))


def test_a_truncated_teacher_is_refused_when_resolved_naming_the_file(tmp_path, models, corpus):
    teacher = tmp_path / "teacher"
    shutil.copytree(models["teacher"], teacher)
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = one_error_line(run(tmp_path, corpus, teacher))
    assert f"{weights}: corrupt or truncated weights file" in line
    assert not (tmp_path / "wd" / "documents").exists()  # found before ingesting anything
    assert not (tmp_path / "wd" / "models" / "registry.json").exists()  # and never recorded


def test_a_config_that_does_not_parse_is_named(tmp_path, models, corpus):
    teacher = tmp_path / "teacher"
    shutil.copytree(models["teacher"], teacher)
    (teacher / "config.json").write_text("{not json")
    assert f"{teacher / 'config.json'}: not a loadable model config" in one_error_line(run(tmp_path, corpus, teacher))


def test_a_corrupt_parquet_source_is_named(tmp_path, models):
    bad = tmp_path / "corpus.parquet"
    bad.write_text('{"text": "this is JSON, not Parquet"}\n')
    assert f"{bad}: cannot read as Parquet" in one_error_line(run(tmp_path, bad, models["teacher"]))


def test_an_empty_corpus_says_so(tmp_path, models):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n   \n")
    line = one_error_line(run(tmp_path, empty, models["teacher"]))
    assert "the corpus holds no documents" in line and f"{empty}: 2 rows, 2 quarantined" in line


@contextmanager
def read_only_folder(path: Path):
    """A folder nobody can write, root included (root ignores permissions, not a read-only mount)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:  # a container that may not mount: sysfs refuses root a new folder too
        yield Path("/sys")
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_work_directory_is_named(tmp_path, models, corpus):
    with read_only_folder(tmp_path / "ro") as folder:
        line = one_error_line(run(tmp_path, corpus, models["teacher"], workdir=folder / "wd"))
    reasons = ("Read-only file system", "Permission denied", "Operation not permitted")
    assert line in [f"error: {folder / 'wd'}: {reason}" for reason in reasons]


def test_a_config_file_that_is_not_json_or_not_valid_is_one_line_naming_it(tmp_path, models, corpus):
    common = ["run", "--corpus", str(corpus), "--teacher", str(models["teacher"]), "--workdir", str(tmp_path / "wd")]
    broken = tmp_path / "broken.json"
    broken.write_text('{"select": {"alpha": 0.5},\n  "split": oops}\n')
    line = one_error_line(miniplm(*common, "--config", str(broken), check=False))
    assert line == f"error: {broken}: not a JSON configuration (at line 2 column 12: Expecting value)"
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert "a configuration is a JSON object, not a list" in one_error_line(
        miniplm(*common, "--config", str(listed), check=False)
    )
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"select": {"alpha": 3}}')
    result = miniplm(*common, "--config", str(invalid), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {invalid}: invalid parameters: select.alpha: Input should be less than")
    assert not (tmp_path / "wd").exists()  # nothing was started
