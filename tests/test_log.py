"""Progress off a terminal: plain lines, periodic, the last one whole."""

from __future__ import annotations

from ltm import log


def test_progress_off_a_terminal_prints_plain_lines_periodically_and_the_last_one_whole(capsys, monkeypatch):
    assert not log.console.is_terminal  # pytest captures stderr, as a pipe or a log file would
    monkeypatch.setattr(log, "PLAIN_EVERY_S", 0.0)
    metrics = "loss 3.141  12,345 tok/s  MFU 41.2%  held-out 3.456  " + "x" * 80  # longer than any default width
    with log.progress() as bar:
        task = bar.add_task("train", total=300, info="")
        for _ in range(300):
            bar.update(task, advance=1, info=metrics)
        hidden = bar.add_task("LLM annotation", total=None, visible=False, info="")
        bar.update(hidden, completed=2, total=5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train 0/300 0:00:00")
    assert len([line for line in lines if line.startswith("train ")]) == 301  # one per update when every 0 s
    assert lines[-1].startswith("train 300/300 ") and lines[-1].endswith(metrics)
    assert "eta" in lines[1] and "eta" not in lines[-1]
    assert not any(line.startswith("LLM annotation") for line in lines)  # never shown, never printed


def test_plain_progress_waits_between_lines(capsys, monkeypatch):
    monkeypatch.setattr(log, "PLAIN_EVERY_S", 3600.0)
    with log.progress() as bar:
        task = bar.add_task("ingest", total=None)
        for _ in range(50):
            bar.advance(task)
    assert capsys.readouterr().err.splitlines() == ["ingest 0 0:00:00", "ingest 50 0:00:00"]
