"""Progress where stderr is not a terminal: a plain line now and then instead of a bar nobody sees."""

from miniplm.progress import clock, progress_bar


def test_a_log_file_gets_a_progress_line_per_interval(capsys, monkeypatch):
    monkeypatch.setenv("MINIPLM_PROGRESS_SECONDS", "0")  # a line at every update that is not the last
    with progress_bar(4, "train reference", "step") as bar:
        for _ in range(4):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "[miniplm] train reference: 25% (1 of 4 step)",
        "[miniplm] train reference: 50% (2 of 4 step)",
        "[miniplm] train reference: 75% (3 of 4 step)",
    ]
    assert all(line.endswith(" left") and " so far, about " in line for line in lines)


def test_no_line_before_the_interval(capsys, monkeypatch):
    monkeypatch.setenv("MINIPLM_PROGRESS_SECONDS", "3600")
    with progress_bar(3, "score", "tok") as bar:
        bar.update(1)
        bar.update(2)
    assert capsys.readouterr().err == ""


def test_durations_read_as_a_clock():
    assert [clock(s) for s in (0.4, 45, 750, 3900, float("nan"))] == ["0 s", "45 s", "12 min 30 s", "1 h 05 min", "?"]
