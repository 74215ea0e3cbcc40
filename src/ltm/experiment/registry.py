"""The run registry: one SQLite file in the experiment's workspace (embedded, nothing to install),
one row per run with its config hash, status, metrics and artifact paths."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL,
    cell TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    run_dir TEXT NOT NULL,
    metrics TEXT,
    error TEXT,
    started REAL,
    finished REAL,
    UNIQUE (experiment, config_hash)
)
"""


class Registry:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")  # workers on several GPUs write at once
        self.db.execute(SCHEMA)
        self.db.commit()

    def register(self, experiment: str, cell: str, seed: int, config_hash: str, config: dict, run_dir: Path) -> sqlite3.Row:
        self.db.execute(
            "INSERT OR IGNORE INTO runs (experiment, cell, seed, config_hash, config, status, run_dir) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (experiment, cell, seed, config_hash, json.dumps(config, sort_keys=True), str(run_dir)),
        )
        self.db.commit()
        return self.get(experiment, config_hash)

    def get(self, experiment: str, config_hash: str) -> sqlite3.Row:
        return self.db.execute("SELECT * FROM runs WHERE experiment = ? AND config_hash = ?", (experiment, config_hash)).fetchone()

    def mark(self, run_id: int, status: str, metrics: dict | None = None, error: str | None = None) -> None:
        now = time.time()
        if status == "running":
            self.db.execute("UPDATE runs SET status = ?, started = ?, error = NULL WHERE id = ?", (status, now, run_id))
        else:
            self.db.execute("UPDATE runs SET status = ?, finished = ?, metrics = ?, error = ? WHERE id = ?",
                            (status, now, json.dumps(metrics) if metrics is not None else None, error, run_id))
        self.db.commit()

    def runs(self, experiment: str | None = None) -> list[sqlite3.Row]:
        if experiment:
            return self.db.execute("SELECT * FROM runs WHERE experiment = ? ORDER BY cell, seed", (experiment,)).fetchall()
        return self.db.execute("SELECT * FROM runs ORDER BY experiment, cell, seed").fetchall()
