"""Study 2's tables and figures (docs/studies/knowledge.md) from its run folders, as pre-registered:
per arm, mean and 95% interval over seeds; each contrast paired by seed (Student's t) and by a
bootstrap over the QA items.

    python experiments/knowledge_report.py RUNS_DIR [RUNS_DIR ...] --out docs/studies/knowledge [--qa QA.jsonl]

RUNS_DIR holds run folders named ARM-sSEED-HASH (an experiment workspace's runs/); a run counts when
its eval.json is there. Writes OUT/results.md, OUT/qa_by_arm.png, OUT/heldout_curves.png, a copy
of each run's small files (eval.json, eval.samples.jsonl, train/metrics.jsonl, config.yaml,
times.json) under OUT/runs/, and each arm's dataset manifest once, gzipped, as
OUT/manifests/ARM.json.gz (the study fixes the data seed, so an arm's seeds share one build),
so anyone can recount.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from ltm.eval.qa import group_of
from ltm.experiment.stats import format_ci, mean_ci, paired_item_bootstrap
from ltm.formats import QAPair

ARMS = ["A1_verbatim", "A2_lenses", "A2s_shuffled_frames", "A3_renderings", "A5_seen_once"]
CONTRASTS = [("A2_lenses", "A1_verbatim", "primary"), ("A3_renderings", "A1_verbatim", "primary"),
             ("A2s_shuffled_frames", "A2_lenses", "secondary"), ("A5_seen_once", "A1_verbatim", "secondary")]
KEPT = ["eval.json", "eval.samples.jsonl", "train/metrics.jsonl", "config.yaml", "times.json"]
NAME = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)-[0-9a-f]+$")


def load(dirs: list[Path]) -> dict[str, dict[int, Path]]:
    runs: dict[str, dict[int, Path]] = defaultdict(dict)
    for folder in dirs:
        for run in sorted(folder.iterdir()):
            match = NAME.match(run.name)
            if match and (run / "eval.json").exists():
                runs[match["arm"]][int(match["seed"])] = run
    return runs


def figures(run: Path) -> dict:
    ev = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    manifest = json.loads((run / "dataset" / "manifest.json").read_text(encoding="utf-8"))
    out = scores(ev, manifest)
    out["exposures"] = exposures(run, manifest)
    return out


def scores(ev: dict, manifest: dict) -> dict:
    """The figures of one evaluation: an eval.json, or anything holding its heldout_bpb, heldout_by,
    qa and cloze (Study 4's think-longer points); `manifest` is the dataset's, for the languages."""
    out = {"heldout_bpb": ev["heldout_bpb"], "wikitext_bpb": (ev.get("wikitext") or {}).get("bpb")}
    for form, groups in (ev.get("qa") or {}).get("forms", {}).items():
        for group, score in groups.items():
            out[f"{form}/{group}/mc"], out[f"{form}/{group}/em"] = score["mc"], score["em"]
            for lang, by in score["by_language"].items():
                out[f"{form}/{group}/mc/{lang}"] = by["mc"]
    # Bits per byte of the real held-out documents per language (the fact set's never-read people apart).
    for lang, bpb in bpb_by_tag(ev, manifest, "lang", keep=lambda doc: not doc.startswith("facts-")).items():
        out[f"bpb/{lang}"] = bpb
    real = [g for doc, g in ev["heldout_by"]["document"].items() if not doc.startswith("facts-")]
    if real:  # both languages, pooled by bytes
        out["bpb/real"] = sum(g["bpb"] * g["bytes"] for g in real) / sum(g["bytes"] for g in real)
    gap = (ev.get("memorization") or {}).get("gap_by_times_seen") or {}
    if gap:
        top = max(gap, key=lambda b: int(b.split("-")[0]))
        out["memorization_gap_top"] = gap[top]["gap"]
    for split, score in ((ev.get("cloze") or {}).get("by_split") or {}).items():
        out[f"cloze/{split}"] = score["accuracy"]
    return out


def curve(run: Path, metrics: str = "train/metrics.jsonl") -> list[tuple[int, float]]:
    """(training tokens, held-out loss) at every held-out measurement of the run."""
    rows = [json.loads(line) for line in (run / metrics).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["tokens"], r["heldout_loss"]) for r in rows if r.get("heldout_loss") is not None]


def bpb_by_tag(ev: dict, manifest: dict, tag: str, keep=lambda doc: True) -> dict[str, float]:
    """Held-out bits per byte of an eval.json grouped by a document tag of the manifest (lang,
    phase), each document weighted by its bytes; documents for which `keep` is false left out."""
    bits, size = defaultdict(float), defaultdict(int)
    for doc, g in ev["heldout_by"]["document"].items():
        if keep(doc):
            value = str(manifest["doc_tags"][doc].get(tag))
            bits[value] += g["bpb"] * g["bytes"]
            size[value] += g["bytes"]
    return {value: bits[value] / size[value] for value in bits}


def keep_raw(runs: dict[str, dict[int, Path]], out: Path, kept: list[str]) -> None:
    """Copy each run's small files (`kept`, paths inside the run folder) to OUT/runs/RUN/, so
    anyone can recount."""
    for by_seed in runs.values():
        for run in by_seed.values():
            for name in kept:
                if (run / name).exists():
                    target = out / "runs" / run.name / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / name, target)


def exposures(run: Path, manifest: dict) -> float | None:
    """Mean times a test person's biographies (any rendering) were read in training: occurrences of a
    biography's first scene (one that is cut in two counts once)."""
    segments = run / "dataset" / "segments_train.npz"
    if not segments.exists():
        return None
    seg = np.load(segments)
    people: dict[str, int] = defaultdict(int)
    for doc in seg["doc"][seg["scene"] == 0]:
        name = manifest["docs"][doc]
        tags = manifest["doc_tags"][name]
        if tags.get("kind") == "biography" and tags.get("split") == "train":
            people[tags["person"]] += 1
    return float(np.mean(list(people.values()))) if people else 0.0


def items(run: Path, form: str, group: str, qa: dict[str, QAPair]) -> dict[str, bool]:
    ev = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    row = ev["qa"]["items"][form]
    return {i: c == "1" for i, c in zip(row["ids"], row["mc"]) if group_of(qa[i]) == group}


def item_bootstrap(runs: dict, b: str, a: str, seeds: list[int], qa: dict[str, QAPair]) -> str:
    """B − A in test-people MC accuracy (question form) with the item bootstrap's 95% interval."""
    if not qa or not seeds:
        return "—"
    left = [items(runs[a][s], "question", "train", qa) for s in seeds]
    right = [items(runs[b][s], "question", "train", qa) for s in seeds]
    ids = sorted(left[0])
    diff, low, high = paired_item_bootstrap([[r[i] for i in ids] for r in left], [[r[i] for i in ids] for r in right])
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] (n={len(ids)} items)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--qa", type=Path, help="the study's QA.jsonl, when the run folders lack theirs (`ltm facts`)")
    args = parser.parse_args()
    runs = load(args.dirs)
    args.out.mkdir(parents=True, exist_ok=True)
    table = {arm: {seed: figures(run) for seed, run in sorted(runs[arm].items())} for arm in ARMS if arm in runs}
    qa_files = ([args.qa] if args.qa else []) + [run / "qa.jsonl" for arm in table for run in runs[arm].values()]
    qa_pairs = {p.id: p for path in qa_files if path.exists()
                for p in map(QAPair.model_validate_json, path.read_text(encoding="utf-8").splitlines())}

    lines = ["# Study 2 results (generated by experiments/knowledge_report.py)", "",
             "Seeds per arm: " + ", ".join(f"{arm} {sorted(table[arm])}" for arm in table), ""]
    columns = [("question/train/mc", "test people MC (q)"), ("question/train/em", "test people EM (q)"),
               ("statement/train/mc", "test people MC (stmt)"), ("statement/train/em", "test people EM (stmt)"),
               ("question/qa_trained/mc", "QA-trained MC"), ("question/heldout/mc", "never-read MC"),
               ("bpb/en", "held-out bpb en"), ("bpb/ru", "held-out bpb ru"), ("wikitext_bpb", "WikiText-2 bpb"),
               ("cloze/heldout", "cloze held-out"), ("memorization_gap_top", "loss gap, most-read bucket"),
               ("exposures", "reads per test person")]
    lines += ["## Per arm (mean ± 95% CI over seeds)", "", "| arm | " + " | ".join(c[1] for c in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for arm, seeds in table.items():
        cells = [format_ci(*mean_ci([s.get(key) for s in seeds.values()])[:2], digits=3) for key, _ in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired by seed (B − A; mean, 95% t interval; item bootstrap 95% interval)", "",
              "| contrast | kind | seeds | MC test people (q) | per seed | item bootstrap | EM test people (q) | MC (stmt) | MC QA-trained | held-out bpb en | held-out bpb ru |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, a, kind in CONTRASTS:
        if a not in table or b not in table:
            continue
        seeds = sorted(set(table[a]) & set(table[b]))

        def delta(key: str) -> str:
            return format_ci(*mean_ci([table[b][s][key] - table[a][s][key] for s in seeds
                                       if table[b][s].get(key) is not None and table[a][s].get(key) is not None])[:2], digits=3)

        per_seed = ", ".join(f"{table[b][s]['question/train/mc'] - table[a][s]['question/train/mc']:+.3f}" for s in seeds)
        boot = item_bootstrap(runs, b, a, seeds, qa_pairs)
        lines.append(f"| {b} − {a} | {kind} | {len(seeds)} | {delta('question/train/mc')} | {per_seed} | {boot} | "
                     f"{delta('question/train/em')} | {delta('statement/train/mc')} | {delta('question/qa_trained/mc')} | "
                     f"{delta('bpb/en')} | {delta('bpb/ru')} |")
    lines += ["", "## Test people by language, MC (question form)", "", "| arm | en | ru |", "|---|---|---|"]
    for arm, seeds in table.items():
        lines.append(f"| {arm} | " + " | ".join(format_ci(*mean_ci([s.get(f"question/train/mc/{lang}") for s in seeds.values()])[:2])
                                                for lang in ("en", "ru")) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plots(table, runs, args.out)
    for arm in table:
        first = runs[arm][min(runs[arm])] / "dataset" / "manifest.json"
        (args.out / "manifests").mkdir(exist_ok=True)
        with gzip.open(args.out / "manifests" / f"{arm}.json.gz", "wb") as handle:
            handle.write(first.read_bytes())
    keep_raw({arm: runs[arm] for arm in table}, args.out, KEPT)
    print(f"wrote {args.out / 'results.md'}")


def plots(table: dict, runs: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for x, (arm, seeds) in enumerate(table.items()):
        for form, offset, marker in (("question", -0.12, "o"), ("statement", 0.12, "s")):
            values = [s[f"{form}/train/mc"] for s in seeds.values()]
            ax.scatter([x + offset] * len(values), values, marker=marker, color="C0" if form == "question" else "C1",
                       label=f"{form} form" if x == 0 else None)
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(len(table)), list(table), rotation=15)
    ax.set_ylabel("test-people MC accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "qa_by_arm.png", dpi=120)
    fig, ax = plt.subplots(figsize=(8, 4))
    for n, arm in enumerate(table):
        for seed, run in runs[arm].items():
            ax.plot(*zip(*curve(run)), color=f"C{n}", alpha=0.6, label=arm if seed == min(runs[arm]) else None)
    save_figure(fig, ax, out / "heldout_curves.png", "training tokens", "held-out loss (nats/token)")


def save_figure(fig, ax, path: Path, xlabel: str, ylabel: str) -> None:
    """Label the axes, add the legend and write the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
