"""Speed of the whole eval stage (`ltm eval RUN`: held-out and WikiText bits per byte, memorization,
the probes' samples, QA, cloze) on a finished run folder, eval.json written beside it as
eval.bench.json so two checkouts' figures can be compared. Run it with PYTHONPATH set to another
checkout's src to time that checkout's eval on the same run (before/after a change).

The CPU figures in bench/results/eval_speed.epyc-2core.jsonl are for a run of the facts example at a
larger eval shape (2,000 QA pairs, 4 layers of width 256, context 256, vocabulary 4096):

    ltm run examples/facts.yaml --run-dir runs/bigeval --set facts.people=200 --set model.d_model=256 \\
        --set model.n_layers=4 --set model.n_heads=4 --set model.n_kv_heads=4 --set model.max_seq_len=256 \\
        --set build.vocab_size=4096 --set train.steps=40 --set train.eval_every=40 \\
        --set eval.samples_per_prompt=2 --set eval.sample_tokens=64 --set eval.memorization_per_bucket=64
    python bench/eval_speed.py runs/bigeval [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

import ltm  # noqa: E402
from ltm.model.modeling import LtmModel  # noqa: E402
from ltm.stages import evaluate_run  # noqa: E402


def count_passes() -> dict[str, int]:
    """Model calls and the token positions they computed (padding included), counted as eval runs:
    what a GPU pays for in kernel launches and work whatever the machine's load."""
    counts = {"forward_calls": 0, "input_positions": 0}
    forward = LtmModel.forward

    def counted(self, input_ids, *args, **kwargs):
        counts["forward_calls"] += 1
        counts["input_positions"] += input_ids.numel()
        return forward(self, input_ids, *args, **kwargs)

    LtmModel.forward = counted
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run folder (its final checkpoint and dataset)")
    parser.add_argument("--repeat", type=int, default=1, help="time the stage this many times; the fastest counts")
    args = parser.parse_args()
    out = args.run / "eval.bench.json"
    counts = count_passes()
    seconds, cpu = [], []  # CPU seconds too: on a shared machine they vary less than wall time
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        evaluate_run(args.run, out)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    result = json.loads(out.read_text(encoding="utf-8"))
    qa = result.get("qa") or {}
    emit("eval_speed", "eval_seconds", min(seconds), "s", run=str(args.run), code=str(Path(ltm.__file__).resolve().parents[1]),
         all_seconds=[round(s, 2) for s in seconds], cpu_seconds=[round(s, 2) for s in cpu],
         **{k: v // args.repeat for k, v in counts.items()}, heldout_bpb=result["heldout_bpb"],
         qa_mc={form: {g: v["mc"] for g, v in groups.items()} for form, groups in qa.get("forms", {}).items()})


if __name__ == "__main__":
    main()
