#!/usr/bin/env bash
# Study 2's remaining runs (docs/studies/knowledge.md, amendment 1) on one GPU in one command: seed 5
# of the five arms (experiments/knowledge-seed5.yaml), then the ~100M size, A1 and A2 x 5 seeds
# (experiments/knowledge-100m.yaml), in one workspace (the 100M cells reuse the arms' builds), then
# the small results packed into OUT.
#
#   bash experiments/study2_device.sh OUT [--tiny]
#
# OUT gets three files (the device machine returns at most 8 files, 2 folders down):
#   study2.tar.gz   workspace/: ltm.sqlite (its WAL checkpointed first), report.md/.html, logs/, and
#                   per run config.yaml, eval.json, eval.samples.jsonl, train/metrics.jsonl,
#                   times.json, qa.jsonl, dataset/manifest.json and dataset/segments_train.npz (each
#                   build once: the runs' files are hard links to the shared build); specs/ (the
#                   experiment files and base this command ran); no checkpoints
#   study2.log      this script's output
#   summary.json    seconds per phase, the registry's cells by status, runs with an eval, the GPU
# The workspace itself (datasets, checkpoints) stays in $STUDY2_WORK (default /tmp/study2-work).
#
# Wheels: when .whl/*.whl exist (ltm's needs the device lacks), they are installed into /tmp/site.
# Corpora: $STUDY2_CORPORA, else .study-data/corpora (the device's copy), else ../shared/corpora;
# the base's ../../shared/corpora paths are pointed there in the copy this command runs.
# Time, in seconds after the start (the device's command limit is 600 s): no seed-5 cell runs past
# STUDY2_SEED5_END_S (default 330), no 100M cell past STUDY2_END_S (default 520): each grid gets
# Ctrl-C then (a stopped grid keeps its finished cells; they run seed by seed, so finished seeds are
# whole pairs), 20 s to stop, and packing takes seconds.
# STUDY2_100M_ARMS=A3_renderings runs only those arms of the 100M grid (amendment 2), and
# STUDY2_SEED5_END_S=0 leaves seed 5 out.
# --tiny (or STUDY2_TINY=1): a tiny model, 2 seeds of the 100M grid, a few steps, on the project's
# small corpus (examples/corpus), on CPUs, with no deadline: checks this script's path in minutes.
set -uo pipefail

OUT=${1:?usage: bash experiments/study2_device.sh OUT [--tiny]}
TINY=${STUDY2_TINY:-0}
[[ "${2:-}" == --tiny ]] && TINY=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=${STUDY2_WORK:-/tmp/study2-work}
if [[ $TINY == 1 ]]; then LIMITS=(7200 9000); else LIMITS=(330 520); fi  # CPUs: no device limit
SEED5_END_S=${STUDY2_SEED5_END_S:-${LIMITS[0]}}
END_S=${STUDY2_END_S:-${LIMITS[1]}}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/study2.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
echo "study2: $(date -u +%FT%TZ) root $ROOT work $WORK tiny $TINY commit $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
phase() { echo "$1 $SECONDS" >> "$WORK/phases.txt"; echo "== $1 at ${SECONDS}s"; }
: > "$WORK/phases.txt"

phase setup
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
fi
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('study2: torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
CORPORA=${STUDY2_CORPORA:-}
for candidate in "$ROOT/.study-data/corpora" "$ROOT/../shared/corpora"; do
    [[ -z $CORPORA && -d $candidate/ru ]] && CORPORA=$(cd "$candidate" && pwd)
done
if [[ -z $CORPORA && $TINY != 1 ]]; then echo "study2: no corpora (set STUDY2_CORPORA)"; exit 2; fi

# The experiment files this command runs: the study's own, their workspace in WORK, the base's
# corpus paths pointed at CORPORA; --tiny shrinks them.
phase specs
"$PY" - "$ROOT" "$WORK" "$TINY" "$CORPORA" <<'EOF' || exit 1
import os
import sys
from pathlib import Path

import yaml

from ltm.config import absolute_inputs
from ltm.experiment.spec import merge

root, work, tiny, corpora = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
experiments = root / "experiments"


def read(name: str) -> dict:
    return yaml.safe_load((experiments / name).read_text(encoding="utf-8"))


def write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


seed5, large, study = read("knowledge-seed5.yaml"), read("knowledge-100m.yaml"), read("knowledge.yaml")
# Seed 5 must be knowledge.yaml's seed-5 cells, so its runs pair with seeds 1-4.
for key in ("name", "base", "budget_tokens", "axes"):
    if seed5.get(key) != study.get(key):
        sys.exit(f"study2: knowledge-seed5.yaml's {key} differs from knowledge.yaml's; its cells would not be seeds 1-4's")
base = read("knowledge-base.yaml")
shared = "../../shared/corpora"  # the base's corpus paths, relative to experiments/
moved = lambda p: p.replace(shared, corpora, 1) if p.startswith(shared) else str((experiments / p).resolve())
base["ingest"]["paths"] = [moved(p) for p in base["ingest"]["paths"]]
base["eval"]["wikitext"] = moved(base["eval"]["wikitext"])
if tiny:
    # The project's own small corpus (examples/corpus), so a tiny run needs no other text.
    base = merge(base, {
        "ingest": {"paths": [str(root / "examples" / "corpus")]},
        "facts": {"people": 8},
        "build": {"heldout": ["en_essay_doubt-dbe83f23", "ru_esse_somnenie-3adaa54f"], "budget_tokens": 24576},
        "model": {"d_model": 48, "n_layers": 2, "max_seq_len": 128},
        "train": {"steps": 24, "batch_size": 8, "warmup_steps": 4, "eval_every": 12, "eval_batches": 2, "device": "cpu"},
        "eval": {"wikitext": None, "memorization_per_bucket": 8, "cloze": {"items": 20}, "device": "cpu"},
    })
    large["axes"]["size"] = {"100M": merge(large["axes"]["size"]["100M"], {"model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4}})}
    seed5["budget_tokens"] = large["budget_tokens"] = 24576  # 24 steps x 8 x 128: A5 reads 98% background, and the corpus holds 27k tokens
    large["seeds"] = [1, 2]
# Paths an arm sets (build.tokenizer) are relative to experiments/, not to the copies' folder.
large["axes"] = {axis: {value: absolute_inputs(override, experiments) for value, override in values.items()}
                 for axis, values in large["axes"].items()}
arms = os.environ.get("STUDY2_100M_ARMS")  # a comma-separated subset of the 100M grid's arms (amendment 2: A3 alone)
if arms:
    large["axes"]["arm"] = {arm: large["axes"]["arm"][arm] for arm in arms.split(",")}
specs = work / "specs"
specs.mkdir(exist_ok=True)
write(specs / "knowledge-base.yaml", base)
for name, spec in (("knowledge-seed5.yaml", seed5), ("knowledge-100m.yaml", large)):
    spec.update(base=str(specs / "knowledge-base.yaml"), workspace=str(work / "workspace"))
    write(specs / name, spec)
    print(f"experiment file: {specs / name}")
EOF

# One grid until a deadline: Ctrl-C then (no new cell starts; running ones stop and would resume on
# a rerun), killed 20 s later if it has not stopped.
grid() {  # SPEC END_S
    local left=$(($2 - SECONDS))
    if ((left < 30)); then echo "study2: no time left for $1"; return; fi
    timeout -s INT -k 20 "$left" "$PY" -m ltm.cli experiment "$1"
    echo "study2: $(basename "$1") ended with status $? (124: stopped at ${2}s)"
}
phase seed5
grid "$WORK/specs/knowledge-seed5.yaml" "$SEED5_END_S"
phase 100m
grid "$WORK/specs/knowledge-100m.yaml" "$END_S"

# Pack what is small; the registry's write-ahead log goes into the database file first.
phase pack
"$PY" - "$WORK" "$OUT" <<'EOF'
import json
import re
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
ws = work / "workspace"
runs = sorted(p for p in (ws / "runs").glob("*") if p.is_dir()) if (ws / "runs").is_dir() else []
status = {}
if (ws / "ltm.sqlite").exists():
    db = sqlite3.connect(ws / "ltm.sqlite")
    try:  # every committed row into the database file, the -wal file emptied: the archive needs no WAL
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            print("study2: the registry was busy; its WAL could not be folded in, it is packed beside it")
        status = {f"{experiment} {state}": n for experiment, state, n in
                  db.execute("SELECT experiment, status, COUNT(*) FROM runs GROUP BY experiment, status")}
    finally:
        db.close()
kept = ["config.yaml", "eval.json", "eval.samples.jsonl", "train/metrics.jsonl", "times.json", "qa.jsonl",
        "dataset/manifest.json", "dataset/segments_train.npz"]
with tarfile.open(out / "study2.tar.gz", "w:gz") as tar:  # hard links (one shared build, many runs) stored once
    for path in [ws / "ltm.sqlite", ws / "ltm.sqlite-wal", ws / "report.md", ws / "report.html", ws / "logs", work / "specs"]:
        if path.exists() and (path.is_dir() or path.stat().st_size):
            tar.add(path, arcname=str(path.relative_to(work)))
    for run in runs:
        for name in kept:
            if (run / name).exists():
                tar.add(run / name, arcname=f"workspace/runs/{run.name}/{name}")
phases = [line.split() for line in (work / "phases.txt").read_text().splitlines()]
seconds = {name: int(phases[i + 1][1]) - int(at) if i + 1 < len(phases) else None for i, (name, at) in enumerate(phases)}
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = "none (CPU)"
summary = {"gpu": gpu, "seconds": seconds, "registry": status, "runs_with_eval": sum((r / "eval.json").exists() for r in runs),
           "cells_with_eval": sorted(re.sub(r"-[0-9a-f]+$", "", r.name) for r in runs if (r / "eval.json").exists())}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary))
print(f"packed {out / 'study2.tar.gz'}: {(out / 'study2.tar.gz').stat().st_size / 2**20:.1f} MiB")
EOF
echo "study2: done in ${SECONDS}s"
