"""Metric loggers besides metrics.jsonl (train.logger): each one receives the step's scalars, and
one that is not installed is a warning, not a failed run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from ltm.train.loggers import MetricLogger


def test_tensorboard_writes_event_files(tmp_path):
    logger = MetricLogger("tensorboard", tmp_path, "run", {})
    logger.log({"loss": 1.5}, 1)
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_trackio_keeps_the_scalars_in_its_local_database(tmp_path):
    pytest.importorskip("trackio", reason="trackio is not installed (pip install 'ltm[trackio]')")
    # trackio reads TRACKIO_DIR when it is imported: a process of its own gets a folder of the test's.
    script = ("from pathlib import Path; from ltm.train.loggers import MetricLogger; "
              f"logger = MetricLogger('trackio', Path({str(tmp_path)!r}), 'run-a', {{'train': {{'lr': 0.1}}}}); "
              "logger.log({'loss': 2.5}, 1); logger.log({'loss': 2.25}, 2); logger.close()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")})
    assert done.returncode == 0, done.stderr
    databases = list((tmp_path / "trackio").glob("*.db"))
    assert databases
    with sqlite3.connect(databases[0]) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        rows = " ".join(str(row) for table in tables for row in db.execute(f"select * from {table}"))
    assert "2.25" in rows and "run-a" in rows


def test_a_logger_that_is_not_installed_is_a_warning_and_none_logs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    logger = MetricLogger("wandb", tmp_path, "run", {})
    logger.log({"loss": 1.0}, 1)
    logger.close()
    assert "train.logger is wandb, which is not installed" in capsys.readouterr().err
    quiet = MetricLogger("none", tmp_path / "quiet", "run", {})
    quiet.log({"loss": 1.0}, 1)
    quiet.close()
    assert not (tmp_path / "quiet").exists()
