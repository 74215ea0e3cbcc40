#!/usr/bin/env bash
# Study 4 (docs/studies/scene-parts.md) on one GPU in one command: the training-speed bench of every
# arm, the grid (experiments/scene-parts.yaml: 7 arms x 5 seeds), the think-longer curves and the
# gate readouts (experiments/scene_parts_probe.py), then the small results packed into OUT.
#
#   bash experiments/study4_device.sh OUT [--tiny]
#
# OUT gets four files (the device machine returns at most 8 files, 2 folders down):
#   study4.tar.gz                  workspace/: ltm.sqlite (its WAL checkpointed), report.md/.html and
#                                  figures, configs/, logs/, and per run config.yaml, eval.json,
#                                  eval.samples.jsonl, train/metrics.jsonl, times.json, parts.json;
#                                  the shared build's manifest.json and qa.jsonl once (data_seed is fixed)
#   scene_parts_throughput.jsonl   the bench's JSON lines (for bench/results/)
#   study4.log                     this script's output
#   summary.json                   seconds per phase, runs done and not, the GPU
# The workspace itself (datasets, checkpoints) stays in $STUDY4_WORK (default /tmp/study4-work).
#
# Time: the command has 7 minutes. New cells stop at STUDY4_GRID_END_S seconds after the start
# (default 295: Ctrl-C to the grid, whose cells run seed by seed, so the seeds done are complete),
# the probes at STUDY4_PROBE_END_S (default 380); packing takes seconds. --tiny has no such limits.
# --tiny (or STUDY4_TINY=1): a tiny model, 2 seeds, a few steps, on the project's own small corpus
# (examples/corpus), on CPUs.
set -uo pipefail

OUT=${1:?usage: bash experiments/study4_device.sh OUT [--tiny]}
TINY=${STUDY4_TINY:-0}
[[ "${2:-}" == --tiny ]] && TINY=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=${STUDY4_WORK:-/tmp/study4-work}
if [[ $TINY == 1 ]]; then LIMITS=(7200 9000); else LIMITS=(295 380); fi  # CPUs: no 7-minute limit
GRID_END_S=${STUDY4_GRID_END_S:-${LIMITS[0]}}
PROBE_END_S=${STUDY4_PROBE_END_S:-${LIMITS[1]}}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/study4.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
echo "study4: $(date -u +%FT%TZ) root $ROOT work $WORK tiny $TINY"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
phase() { echo "$1 $SECONDS" >> "$WORK/phases.txt"; echo "== $1 at ${SECONDS}s"; }
: > "$WORK/phases.txt"

# The experiment file this run uses: the study's own, its workspace in WORK; --tiny shrinks it.
phase spec
"$PY" - "$ROOT" "$WORK" "$TINY" <<'EOF' || exit 1
import sys
from pathlib import Path

import yaml

from ltm.experiment.spec import merge

root, work, tiny = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
spec = yaml.safe_load((root / "experiments" / "scene-parts.yaml").read_text(encoding="utf-8"))
spec["workspace"] = str(work / "workspace")
spec["base"] = str(root / "experiments" / "scene-parts-base.yaml")
if tiny:
    base = yaml.safe_load((root / "experiments" / "scene-parts-base.yaml").read_text(encoding="utf-8"))
    # The project's own small corpus (examples/corpus), so a tiny run needs no other text.
    base = merge(base, {
        "ingest": {"paths": [str(root / "examples" / "corpus")]},
        "facts": {"people": 8},
        "build": {"heldout": ["en_essay_doubt-dbe83f23", "ru_esse_somnenie-3adaa54f"], "budget_tokens": 32768},
        "model": {"d_model": 48, "max_seq_len": 128},
        "train": {"steps": 32, "batch_size": 8, "warmup_steps": 4, "eval_every": 16, "eval_batches": 2, "device": "cpu"},
        "eval": {"cloze": {"items": 20}, "device": "cpu"},
    })
    (work / "scene-parts-base.yaml").write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False), encoding="utf-8")
    spec.update(base=str(work / "scene-parts-base.yaml"), seeds=[1, 2], budget_tokens=32768)
(work / "scene-parts.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
print(f"experiment file: {work / 'scene-parts.yaml'} (base {spec['base']})")
EOF
SPEC=$WORK/scene-parts.yaml
WS=$WORK/workspace

# Each arm's training speed, alone on the GPU, before the grid shares it.
phase bench
if [[ $TINY == 1 ]]; then BENCH_STEPS=(--steps 3 --skip 1); else BENCH_STEPS=(--steps 30 --skip 10); fi
"$PY" "$ROOT/bench/scene_parts_throughput.py" --experiment "$SPEC" "${BENCH_STEPS[@]}" > "$WORK/bench.out" \
    || echo "study4: the bench failed (see above); the grid goes on"
grep '^{' "$WORK/bench.out" > "$OUT/scene_parts_throughput.jsonl"
cat "$OUT/scene_parts_throughput.jsonl"

# The probes: loop steps 1, 2, 4, 8 for the self-looped arms, gates for the arms with channels. A
# watcher probes finished runs while the grid trains the next ones; what is left is probed after.
PROBE_ARMS=(loop all_on channels channels_aligned)
unclaimed() {  # runs of the probed arms with an evaluation and no probe started
    for arm in "${PROBE_ARMS[@]}"; do
        for run in "$WS"/runs/"$arm"-s*; do
            [[ -f $run/eval.json && ! -e $run/.probe ]] && echo "$run"
        done
    done
}
probe() {  # probe the runs given on stdin, $1 at once, each claimed first; none past PROBE_END_S
    local left=$((PROBE_END_S - SECONDS))
    ((left > 5)) || return 0
    while read -r run; do touch "$run/.probe" && echo "$run"; done \
        | timeout -k 10 "$left" xargs -r -n 1 -P "$1" "$PY" "$ROOT/experiments/scene_parts_probe.py" --steps 1 2 4 8 --
}
watch_and_probe() {
    until [[ -e $WORK/grid.done ]]; do
        unclaimed | head -n 2 | probe 2
        sleep 5
    done
}

# The grid, stopped (Ctrl-C: no new cell starts, a rerun resumes) when it would leave no time for
# the rest.
phase grid
rm -f "$WORK/grid.done"
watch_and_probe &
WATCHER=$!
left=$((GRID_END_S - SECONDS))
timeout -s INT -k 30 $((left > 10 ? left : 10)) "$PY" -c 'import sys; from ltm.cli import main; sys.exit(main())' \
    experiment "$SPEC"
echo "study4: the grid ended with status $? (124: stopped at ${GRID_END_S}s)"
touch "$WORK/grid.done"

phase probes
if [[ $TINY == 1 ]]; then JOBS=1; else JOBS=12; fi
unclaimed | probe "$JOBS"
wait "$WATCHER"
echo "study4: $(ls "$WS"/runs/*/parts.json 2> /dev/null | wc -l) runs probed"

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
if (ws / "ltm.sqlite").exists():
    with sqlite3.connect(ws / "ltm.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        status = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
else:
    status = {}
kept = ["config.yaml", "eval.json", "eval.samples.jsonl", "train/metrics.jsonl", "times.json", "parts.json"]
with tarfile.open(out / "study4.tar.gz", "w:gz") as tar:
    for path in [ws / "ltm.sqlite", ws / "report.md", ws / "report.html", *ws.glob("*.png"), ws / "configs", ws / "logs",
                 work / "scene-parts.yaml", work / "bench.out"]:
        if path.exists():
            tar.add(path, arcname=str(path.relative_to(work)))
    for run in runs:
        for name in kept:
            if (run / name).exists():
                tar.add(run / name, arcname=f"workspace/runs/{run.name}/{name}")
    built = next((r for r in runs if (r / "dataset" / "manifest.json").exists()), None)
    if built is not None:  # one build for every arm and seed (data_seed is fixed): its manifest and QA once
        tar.add(built / "dataset" / "manifest.json", arcname="workspace/dataset/manifest.json")
        if (built / "qa.jsonl").exists():
            tar.add(built / "qa.jsonl", arcname="workspace/dataset/qa.jsonl")
phases = [line.split() for line in (work / "phases.txt").read_text().splitlines()]
seconds = {name: int(phases[i + 1][1]) - int(at) if i + 1 < len(phases) else None for i, (name, at) in enumerate(phases)}
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() \
    if subprocess.run(["which", "nvidia-smi"], capture_output=True).returncode == 0 else "none (CPU)"
summary = {"gpu": gpu, "seconds": seconds, "registry": status,
           "runs_with_eval": sum((r / "eval.json").exists() for r in runs), "runs_probed": sum((r / "parts.json").exists() for r in runs),
           "arms": sorted({re.sub(r"-s\d+-[0-9a-f]+$", "", r.name) for r in runs})}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary))
print(f"packed {out / 'study4.tar.gz'}: {(out / 'study4.tar.gz').stat().st_size / 2**20:.1f} MiB")
EOF
echo "study4: done in ${SECONDS}s"
