#!/usr/bin/env bash
# Study 3 end to end on one GPU (docs/studies/curriculum.md, docs/studies/initiation.md), in one
# command that ends inside 8 minutes on an H200:
#   bash experiments/study3_device.sh OUT [--tiny]
# 1. the tagged corpus links and the dialogues (experiments/study3.py prepare);
# 2. Study 3a, six curriculum arms x five seeds (ltm experiment, cells side by side);
# 3. Study 3b on each seed's shuffle model: LoRA, full, none (ltm experiment), then the held-out
#    assistant-turn loss and the replies (experiments/initiation_eval.py);
# 4. every registry's write-ahead log folded in, and OUT/study3-results.tar.gz: each run's small
#    files, the registries, logs, specs and replies (what the report scripts read), under 16 MiB.
# OUT's top holds only study3.log and that archive (the device returns at most 8 files, 2 folders
# down); the workspaces (registries, runs, checkpoints, datasets) are under OUT/work.
# Each step has a time limit (CURRICULUM_S, INITIATION_S, EVAL_S seconds) so that a slow machine
# still leaves a registry, the finished seeds and the archive: a stopped grid is reported as such.
# The corpora: STUDY3_CORPORA, else .study-data/corpora (the device copy), else ../shared/corpora.
# --tiny: a model, data and steps small enough for a CPU check in minutes (two seeds).
set -u
if [ $# -lt 1 ]; then echo "usage: bash experiments/study3_device.sh OUT [--tiny]" >&2; exit 2; fi
OUT=$(realpath -m "$1")
TINY=${2:-}
cd "$(dirname "$0")/.."
WORK=$OUT/work
mkdir -p "$WORK"
exec > >(tee -a "$OUT/study3.log") 2>&1
PY=${PYTHON:-python3}
CORPORA=${STUDY3_CORPORA:-}
for candidate in .study-data/corpora ../shared/corpora; do
  if [ -z "$CORPORA" ] && [ -d "$candidate/ru" ]; then CORPORA=$candidate; fi
done
if [ -z "$CORPORA" ]; then echo "study3: no corpora (set STUDY3_CORPORA)"; exit 2; fi
# Seconds each step may take: the three sum to 7m25s on a GPU (with prepare and packing, under 8 minutes); a CPU check is slower.
if [ "$TINY" = "--tiny" ]; then limits=(1500 600 300); else limits=(280 110 55); fi
started=$(date +%s)
stamp() { echo "study3: [$(( $(date +%s) - started ))s] $*"; }
stamp "start $(date -u +%FT%TZ) corpora=$CORPORA out=$OUT $TINY"
nvidia-smi -L 2>/dev/null || echo "study3: no GPU"
"$PY" -c "import torch; print('study3: torch', torch.__version__, 'cuda', torch.cuda.is_available())"

"$PY" experiments/study3.py prepare --corpora "$CORPORA" --work "$WORK/dialogue-sources" $TINY || exit 1
"$PY" experiments/study3.py specs --out "$WORK" --corpora "$CORPORA" $TINY || exit 1

stamp "Study 3a: curriculum"
timeout -s INT -k 20 "${CURRICULUM_S:-${limits[0]}}" "$PY" -m ltm.cli experiment "$WORK/specs/curriculum.yaml"
stamp "curriculum exited $?"

"$PY" experiments/study3.py seed-bases --out "$WORK"
stamp "Study 3b: initiation"
timeout -s INT -k 20 "${INITIATION_S:-${limits[1]}}" "$PY" -m ltm.cli experiment "$WORK/specs/initiation.yaml"
stamp "initiation exited $?"
timeout -k 10 "${EVAL_S:-${limits[2]}}" "$PY" experiments/initiation_eval.py "$WORK"
stamp "initiation_eval exited $?"

"$PY" experiments/study3.py checkpoint-wal "$WORK"
"$PY" experiments/study3.py pack --out "$WORK" --archive "$OUT/study3-results.tar.gz" --extra "$OUT/study3.log"
stamp "done"
