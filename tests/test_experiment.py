"""Experiments on CPU with tiny configs: the grid, the registry, skipping finished cells, resuming an
interrupted one, and the study table from the database alone."""

import json
import math
import sqlite3

import pytest
import yaml

from conftest import TINY_CONFIG
from ltm.cli import main
from ltm.config import ConfigError
from ltm.experiment.spec import cells, load_spec
from ltm.experiment.stats import format_ci, mean_ci


def write_experiment(tmp_path, corpus, seeds=(1, 2)):
    base = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp_path / "unused"))
    base["train"] = dict(base["train"], steps=12, eval_every=6, checkpoint_every=4, logger="none")
    base["eval"] = {"memorization_per_bucket": 4, "samples_per_prompt": 1, "sample_tokens": 8, "data_sample_tokens": 1000}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "name": "tiny-study", "base": "base.yaml", "workspace": "ws", "seeds": list(seeds), "budget_tokens": 3000,
        "axes": {"regime": {"epochs_2": {"build": {"regime": {"corpus_epochs": 2}}}, "spiral_2": {"build": {"regime": {"spiral": 2}}}}},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_grid_is_axes_times_seeds_at_one_budget(tmp_path, corpus):
    spec, folder = load_spec(write_experiment(tmp_path, corpus, seeds=(1, 2, 3)))
    grid = cells(spec, folder)
    assert len(grid) == 6 and len({c.config_hash for c in grid}) == 6
    assert {c.config["build"]["budget_tokens"] for c in grid} == {3000}
    assert {c.name for c in grid} == {"regime=epochs_2", "regime=spiral_2"}
    assert {c.config["build"]["regime"].get("spiral") for c in grid} == {None, 2}


def test_a_bad_cell_is_refused_before_anything_runs(tmp_path, corpus):
    path = write_experiment(tmp_path, corpus)
    spec = yaml.safe_load(path.read_text())
    spec["axes"]["regime"]["broken"] = {"build": {"regime": {"twice": 2}}}
    spec["axes"]["regime"]["typo"] = {"build": {"regime": {"spiral": 2}, "lenses": [{"passes": 1, "lens": "critc"}]}}
    spec["axes"]["regime"]["lost"] = {"initiation": {"mode": "lora", "paths": ["no-such-chats"]}}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as refused:
        cells(*load_spec(path))
    message = str(refused.value)  # every problem of every cell at once, each naming its cell
    assert "cell regime=broken seed 1: build.regime" in message
    assert "cell regime=typo seed 2: build.lenses: unknown lens(es): 'critc'" in message
    assert "cell regime=lost seed 1: initiation.paths:" in message and "no-such-chats does not exist" in message
    assert main(["experiment", str(path)]) == 1
    assert not (tmp_path / "ws").exists()


def test_a_failed_cell_makes_the_experiment_fail_and_compare_lists_it(tmp_path, corpus, capsys):
    path = write_experiment(tmp_path, corpus, seeds=(1,))
    spec = yaml.safe_load(path.read_text())
    spec["budget_tokens"] = 10**7  # more than the corpus: `unique` refuses at build, after ingest and scenes
    spec["axes"] = {"regime": {"unique": {"build": {"regime": "unique"}}}}
    path.write_text(yaml.safe_dump(spec))
    assert main(["experiment", str(path)]) == 1
    assert "1 of 1 runs failed (regime=unique seed 1)" in capsys.readouterr().err.replace("\n", " ")
    assert main(["runs", "compare", "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) left out of the table" in out and "regime=unique seed 1: failed (" in out
    assert "is more than" in out  # the error's last line says why


def test_unfinished_lists_failed_pending_and_missing_seeds(tmp_path):
    from ltm.experiment.registry import Registry
    from ltm.experiment.report import unfinished

    registry = Registry(tmp_path / "ltm.sqlite")
    for n, (cell, seed, status) in enumerate([("a", 1, "done"), ("a", 2, "done"), ("b", 1, "failed"), ("c", 1, "pending")]):
        row = registry.register("x", cell, seed, f"h{n}", {}, tmp_path / str(n))
        if status != "pending":
            registry.mark(row["id"], status, metrics={} if status == "done" else None, error="Traceback\nBuildError: no text")
    lines = unfinished(registry, "x").splitlines()
    assert lines[0] == "4 run(s) left out of the table:"
    assert set(lines[1:]) == {"- b seed 1: failed (BuildError: no text)", "- c seed 1: not finished (pending)",
                              "- b seed 2: missing (no run recorded)", "- c seed 2: missing (no run recorded)"}


def test_run_skip_resume_and_compare(tmp_path, corpus, capsys):
    path = write_experiment(tmp_path, corpus)
    assert main(["experiment", str(path)]) == 0
    db = sqlite3.connect(tmp_path / "ws" / "ltm.sqlite")
    rows = db.execute("SELECT cell, seed, status, run_dir, metrics FROM runs ORDER BY cell, seed").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("regime=epochs_2", 1, "done"), ("regime=epochs_2", 2, "done"),
                                                   ("regime=spiral_2", 1, "done"), ("regime=spiral_2", 2, "done")]
    assert all(isinstance(json.loads(r[4])["heldout_bpb"], float) for r in rows)
    report = (tmp_path / "ws" / "report.md").read_text()
    assert "regime=spiral_2 | 2 |" in report and " ± " in report

    # Rerunning skips every finished cell.
    capsys.readouterr()
    assert main(["experiment", str(path)]) == 0
    assert capsys.readouterr().err.count("skip regime=") == 4

    # An interrupted cell (status running, training stopped after a checkpoint) is resumed, not restarted.
    run_dir = tmp_path / "ws" / "runs" / next(p.name for p in (tmp_path / "ws" / "runs").iterdir())
    for name in ("eval.json", "report.html"):
        (run_dir / name).unlink()
    import shutil

    shutil.rmtree(run_dir / "train" / "checkpoint")
    for old in sorted((run_dir / "train" / "checkpoints").iterdir())[1:]:
        shutil.rmtree(old)
    db.execute("UPDATE runs SET status = 'running', metrics = NULL WHERE run_dir = ?", (str(run_dir),))
    db.commit()
    assert main(["experiment", str(path)]) == 0
    log = (tmp_path / "ws" / "logs" / f"{run_dir.name}.log").read_text()
    assert "build: kept" in log.replace("[bold]", "").replace("[/bold]", "").replace("3/6 ", "") or "kept" in log
    assert "resuming from" in log
    assert db.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] == 4

    # The table comes back from the database alone.
    capsys.readouterr()
    assert main(["runs", "compare", "--workspace", str(tmp_path / "ws")]) == 0
    table = capsys.readouterr().out
    assert "## tiny-study" in table and table.count("| regime=") == 2
    assert main(["runs", "list", "--workspace", str(tmp_path / "ws")]) == 0
    assert capsys.readouterr().out.count("\tdone\t") == 4


def test_mean_and_confidence_interval():
    mean, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci([5.0])[1]) and format_ci(*mean_ci([5.0])[:2]) == "5.000"
    assert format_ci(2.0, 0.5, digits=2) == "2.00 ± 0.50"


def test_run_metrics_carry_the_fact_set_questions_by_group(tmp_path):
    from ltm.experiment.metrics import run_metrics

    score = lambda mc, em: {"n": 10, "mc": mc, "mc_ci95": [0, 1], "em": em, "by_attribute": {}, "by_language": {}}  # noqa: E731
    ev = {"heldout_bpb": 2.0, "baselines": {"unigram_bpb": 3.0, "untrained_bpb": 4.0},
          "qa": {"forms": {"question": {"train": score(0.4, 0.1), "qa_trained": score(0.9, 0.7), "heldout": score(0.25, 0.0)},
                           "statement": {"train": score(0.5, 0.2)}}}}
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    metrics = run_metrics(tmp_path)
    assert (metrics["qa_mc"], metrics["qa_em"], metrics["qa_trained_mc"], metrics["qa_heldout_mc"]) == (0.4, 0.1, 0.9, 0.25)
    (tmp_path / "eval.json").write_text(json.dumps(ev | {"qa": None}))
    assert "qa_mc" not in run_metrics(tmp_path)
    # bpb per language, the memorization gap and cloze, where eval.json has them.
    ev |= {"heldout_by": {"language": {"en": {"bpb": 1.5, "bytes": 10}}},
           "memorization": {"gap_by_times_seen": {"4-7": {"n": 3, "train_nll": 1.0, "heldout_nll": 3.0, "gap": 2.0}}},
           "cloze": {"by_split": {"heldout": {"accuracy": 0.4}}}}
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    metrics = run_metrics(tmp_path)
    assert metrics["heldout_bpb_by_language"] == {"en": 1.5} and metrics["memorization_gap_by_times_seen"] == {"4-7": 2.0}
    assert metrics["cloze_heldout_accuracy"] == 0.4 and "cloze_train_accuracy" not in metrics


def test_submitted_cells_run_as_jobs_and_only_the_submitter_writes_its_local_registry(tmp_path, corpus, monkeypatch):
    pytest.importorskip("submitit")
    from ltm.experiment import submit

    path = write_experiment(tmp_path, corpus, seeds=(1,))
    spec = yaml.safe_load(path.read_text())
    spec["axes"] = {"regime": {"epochs_2": {"build": {"regime": {"corpus_epochs": 2}}}}}
    path.write_text(yaml.safe_dump(spec))
    registry = tmp_path / "local-disk" / "registry.sqlite"
    flags = ["--submit", "local", "--gpus-per-run", "0", "--cpus-per-run", "1", "--registry", str(registry)]
    assert main(["experiment", str(path), *flags]) == 0
    with sqlite3.connect(registry) as db:
        status, metrics = db.execute("SELECT status, metrics FROM runs").fetchone()
    assert status == "done" and json.loads(metrics)["heldout_bpb"] > 0
    assert not (tmp_path / "ws" / "ltm.sqlite").exists() and (tmp_path / "ws" / "report.md").exists()
    assert list((tmp_path / "ws" / "logs" / "submitit").glob("*_log.out"))  # the job's own output, beside the cell's log
    monkeypatch.setattr(submit, "file_system", lambda path: "nfs")
    assert main(["experiment", str(path), *flags]) == 1  # SQLite on NFS: refused before anything is submitted


def test_cells_come_seed_by_seed(tmp_path):
    from ltm.experiment.spec import cells, load_spec

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"name": "b", "facts": {"people": 4}}))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"name": "e", "base": "base.yaml", "seeds": [1, 2],
                                                        "axes": {"arm": {"a": {}, "b": {"train": {"lr": 1e-3}}}}}))
    order = [(c.seed, c.name) for c in cells(*load_spec(tmp_path / "exp.yaml"))]
    assert order == [(1, "arm=a"), (1, "arm=b"), (2, "arm=a"), (2, "arm=b")]


def test_the_item_bootstrap_centres_on_the_difference_and_narrows_with_more_items():
    from ltm.experiment.stats import paired_item_bootstrap

    rng = __import__("random").Random(0)
    for n in (50, 2000):
        a = [[rng.random() < 0.3 for _ in range(n)] for _ in range(3)]
        b = [[rng.random() < 0.5 for _ in range(n)] for _ in range(3)]
        diff, low, high = paired_item_bootstrap(a, b, resamples=2000)
        assert low < diff < high and low < 0.2 < high
        width = high - low
    assert width < 0.05  # 2,000 items x 3 seeds: about +-2 points
    same = paired_item_bootstrap(a, a, resamples=200)
    assert same == (0.0, 0.0, 0.0)
