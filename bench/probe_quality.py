"""Quality of the thinking-behaviour probes (ltm.eval.probes) on the labelled set written for ltm
(src/ltm/data/probes/labelled.jsonl: short passages, half English, half Russian, each labelled by
meaning for the six probes).

    python bench/probe_quality.py [--labelled FILE]

Prints precision, recall and F1 per probe as JSON lines, for all passages and for each language
(`lang`: all, en, ru); a passage counts as predicted positive when the probe's count is above zero.
`support` is the number of gold positives. tests/test_probes.py keeps floors 0.15 below these figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

from ltm.eval.probes import read_labelled, validate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", type=Path, help="a labelled JSONL file instead of the built-in set")
    args = parser.parse_args()
    passages = read_labelled(args.labelled)
    for lang in ("all", *sorted({p["lang"] for p in passages})):
        scores = validate(args.labelled, lang=None if lang == "all" else lang)
        for probe, figures in scores.items():
            for metric in ("precision", "recall", "f1"):
                emit("probe_quality", f"{probe}_{metric}", figures[metric], "fraction", lang=lang, support=figures["support"])


if __name__ == "__main__":
    main()
