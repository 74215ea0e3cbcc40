"""The experiment scheduler on CPU: several cells at once in worker processes, one build for the cells
that share it however many start together, a failing cell that stops none of the others, finished
cells skipped on a rerun, and a cell's result the same in a worker as in a run of its own."""

import json
import os
import sys
import sqlite3
from pathlib import Path

import pytest
import yaml

from conftest import TINY_CONFIG
from ltm.cli import main
from ltm.config import RunConfig
from ltm.experiment.parallel import cell_bytes, default_parallel
from ltm.formats import StageTimes


def test_cells_run_at_once_share_one_build_and_a_failure_stops_none(tmp_path, corpus, capsys):
    base = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp_path / "unused"), data_seed=5)
    base["train"] = dict(base["train"], steps=8, eval_every=4, logger="none")
    base["eval"] = {"memorization_per_bucket": 4, "samples_per_prompt": 1, "sample_tokens": 8, "data_sample_tokens": 1000}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"name": "at-once", "base": "base.yaml", "workspace": "ws", "seeds": [1, 2], "budget_tokens": 3000, "parallel": 2,
            "axes": {"regime": {"epochs_2": {"build": {"regime": {"corpus_epochs": 2}}},
                                # the same build; training refuses a micro-batch that does not divide the batch
                                "broken": {"build": {"regime": {"corpus_epochs": 2}}, "train": {"micro_batch_size": 3}}}}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["experiment", str(path)]) == 1
    err = capsys.readouterr().err
    assert "2 at a time on CPUs" in err and "2 of 4 runs failed (regime=broken seed 1, regime=broken seed 2)" in err.replace("\n", " ")
    assert "[4/4: 2 done, 0 running, 2 failed" in err  # the plain progress lines of a run without a terminal

    ws = tmp_path / "ws"
    db = sqlite3.connect(ws / "ltm.sqlite")
    rows = {(cell, seed): (status, started, finished, error) for cell, seed, status, started, finished, error in
            db.execute("SELECT cell, seed, status, started, finished, error FROM runs")}
    assert {key: row[0] for key, row in rows.items()} == {("regime=epochs_2", 1): "done", ("regime=epochs_2", 2): "done",
                                                          ("regime=broken", 1): "failed", ("regime=broken", 2): "failed"}
    assert "is not a multiple of micro_batch_size" in rows[("regime=broken", 1)][3]
    first, second = rows[("regime=epochs_2", 1)], rows[("regime=broken", 1)]  # cells come seed by seed
    assert first[1] < second[2] and second[1] < first[2]  # the two ran at the same time
    # Four cells started two at a time, one build: each data stage made once, under its lock.
    assert sorted(p.name.split("-")[0] for p in (ws / "shared").iterdir() if p.is_dir()) == ["build", "ingest", "scenes", "tokenizer"]
    logs = [p.read_text() for p in (ws / "logs").iterdir()]
    assert sum("tokenizer trained once" in log for log in logs) == 1

    # Rerunning skips the finished cells and tries the failed ones again.
    assert main(["experiment", str(path), "--parallel", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("skip regime=epochs_2") == 2 and "2 to run, 1 at a time" in err


def test_a_cell_computes_the_same_in_a_worker_after_others_as_alone(tmp_path, corpus):
    base = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp_path / "unused"), data_seed=5)
    base["train"] = dict(base["train"], steps=8, eval_every=4, logger="none")
    base["eval"] = {"memorization_per_bucket": 4, "samples_per_prompt": 2, "sample_tokens": 8, "data_sample_tokens": 1000}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"name": "in-turn", "base": "base.yaml", "workspace": "ws", "seeds": [1, 2], "budget_tokens": 3000,
            "axes": {"regime": {"epochs_2": {"build": {"regime": {"corpus_epochs": 2}}}}}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["experiment", str(path)]) == 0  # one worker on CPUs: seed 2 runs in the process seed 1 ran in
    ws = tmp_path / "ws"
    (config,) = [p for p in (ws / "configs").iterdir() if "-s2-" in p.name]
    assert main(["run", str(config), "--run-dir", str(tmp_path / "alone")]) == 0
    in_worker = json.loads((ws / "runs" / config.stem / "eval.json").read_text())
    alone = json.loads((tmp_path / "alone" / "eval.json").read_text())
    for key in ("heldout_bpb", "memorization", "diversity", "wikitext"):
        assert in_worker[key] == alone[key], key
    # Each run says where its time went: the shared data stages, or the stages it made alone.
    shared_times = StageTimes.model_validate_json((ws / "runs" / config.stem / "times.json").read_text())
    alone_times = StageTimes.model_validate_json((tmp_path / "alone" / "times.json").read_text())
    assert list(shared_times.stages) == ["ingest", "scenes", "build", "link", "train", "eval", "report"]
    assert list(alone_times.stages) == ["ingest", "scenes", "build", "train", "eval", "report"]
    assert alone_times.total_s >= sum(alone_times.stages.values()) > 0


def test_the_default_is_what_free_gpu_memory_holds_and_one_on_cpus():
    study = RunConfig.model_validate({"build": {"vocab_size": 8192}, "train": {"batch_size": 32},
                                      "model": {"d_model": 384, "n_layers": 6, "n_heads": 6, "n_kv_heads": 6, "max_seq_len": 512}})
    assert 1 * 2**30 < cell_bytes(study) < 8 * 2**30
    assert default_parallel([study], None) == 1  # no GPU
    assert default_parallel([study], 140 * 2**30, cores=16) == 12  # an H200 holds many; at most 12
    assert default_parallel([study], 140 * 2**30, cores=4) == 4  # one per core
    assert default_parallel([study], cell_bytes(study) * 3 + 6 * 2**30, cores=64) == 3
    assert default_parallel([study], 2**30, cores=64) == 1  # never none


def test_a_worker_that_dies_is_reported_not_waited_for(tmp_path):
    from ltm.experiment.runner import Worker, WorkerDied
    from ltm.experiment.worker import Job

    worker = Worker(gpu=None, cores=None)
    worker.process.kill()  # as the kernel's out-of-memory killer would
    with pytest.raises(WorkerDied, match="exit code -9"):
        worker.run(Job(tmp_path / "c.yaml", tmp_path / "run", tmp_path / "shared", tmp_path / "log"))
    worker.close()


def test_the_grid_view_on_a_terminal_counts_cells_and_names_each_that_ends(monkeypatch):
    import io
    import re

    from rich.console import Console

    import ltm.experiment.progress as grid_progress
    import ltm.log

    screen = io.StringIO()
    terminal = Console(force_terminal=True, file=screen, width=120, highlight=False)
    monkeypatch.setattr(ltm.log, "console", terminal)
    monkeypatch.setattr(grid_progress, "console", terminal)
    with grid_progress.GridProgress(3) as shown:
        shown.cell_started("regime=a seed 1")
        shown.cell_started("regime=b seed 1")
        shown.cell_finished("regime=a seed 1", True, 72.0)
        shown.cell_finished("regime=b seed 1", False, 3.0, "BuildError: no text")
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.getvalue())
    assert "done regime=a seed 1 in 1m12s" in text and "failed regime=b seed 1 after 3s: BuildError: no text" in text
    assert "1 done, 0 running, 1 failed" in text and "2/3" in text  # the bar: cells ended of all, and the counts


def test_mps_daemon_of_its_own_started_checked_and_stopped(tmp_path, monkeypatch):
    """A stand-in nvidia-cuda-mps-control records how it is called: started with -d and the private
    pipe folder, told to quit at the end; the probe runs as the daemon's client and says when it
    cannot reach the GPU."""
    from ltm.experiment.mps import mps_daemon, reaches_gpu

    calls = tmp_path / "calls"
    control = tmp_path / "bin" / "nvidia-cuda-mps-control"
    control.parent.mkdir()
    control.write_text(f'#!/bin/sh\necho "$* pipe=$CUDA_MPS_PIPE_DIRECTORY stdin=$(cat -)" >> {calls}\n')
    control.chmod(0o755)
    monkeypatch.setenv("PATH", f"{control.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)

    with mps_daemon(True) as env:
        pipe = env["CUDA_MPS_PIPE_DIRECTORY"]
        assert Path(pipe).is_dir() and "CUDA_MPS_LOG_DIRECTORY" in env
        assert reaches_gpu(env, probe=[sys.executable, "-c", f"import os; assert os.environ['CUDA_MPS_PIPE_DIRECTORY'] == {pipe!r}"])
        assert not reaches_gpu(env, probe=[sys.executable, "-c", "raise SystemExit('no CUDA-capable device')"])
    started, stopped = calls.read_text().splitlines()
    assert started.startswith("-d pipe=" + pipe) and stopped == f" pipe={pipe} stdin=quit"
    assert not Path(pipe).exists()  # the private folder is gone with the daemon

    calls.unlink()
    with mps_daemon(False) as env:
        assert env == {}
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))  # the user's own daemon: nothing started
    with mps_daemon(True) as env:
        assert env == {}
    assert not calls.exists()
