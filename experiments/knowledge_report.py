"""Study 2's tables and figures (docs/studies/knowledge.md) from its run folders, as pre-registered:
per arm, mean and 95% interval over seeds; each contrast paired by seed (Student's t) and by a
bootstrap over the QA items.

    python experiments/knowledge_report.py RUNS_DIR [RUNS_DIR ...] --out docs/studies/knowledge [--qa QA.jsonl]

RUNS_DIR holds run folders named ARM-sSEED-HASH (an experiment workspace's runs/, or this script's
own OUT/runs); a run counts when its eval.json is there, and a later RUNS_DIR's run replaces an
earlier one's of the same arm and seed (so the committed seeds 1-4 and a new workspace combine).
Arms ending in _100M are the ~100M size (experiments/knowledge-100m.yaml: A1, A2, A3 of
amendment 2 and A3t of amendment 3): their own tables, both primary contrasts and amendment 3's
(A3t − A1, A3t − A3) within the size, each arm against its 20M twin, amendment 1's rule for whether the 20M answer holds, and each contrast's change between sizes.
Every paired table gives the MC difference its seeds' spread detects with 80% power. Writes OUT/results.md, OUT/qa_by_arm.png,
OUT/heldout_curves.png, a copy of each run's small files (eval.json, eval.samples.jsonl,
train/metrics.jsonl, config.yaml, times.json) under OUT/runs/, and per build (the study fixes the
data seed, so an arm's seeds and sizes share one build) its manifest, gzipped, as
OUT/manifests/ARM.json.gz and how often each test person's biography was read as
OUT/manifests/ARM.reads.json, so anyone can recount. A run folder without its dataset/ (a kept
copy) takes both from the manifests/ folder beside its runs folder.
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
from scipy.stats import t as student_t

from ltm.eval.qa import group_of
from ltm.experiment.stats import format_ci, mean_ci, paired_item_bootstrap
from ltm.formats import QAPair

ARMS = ["A1_verbatim", "A2_lenses", "A2s_shuffled_frames", "A3_renderings", "A5_seen_once"]
CONTRASTS = [("A2_lenses", "A1_verbatim", "primary"), ("A3_renderings", "A1_verbatim", "primary"),
             ("A2s_shuffled_frames", "A2_lenses", "secondary"), ("A5_seen_once", "A1_verbatim", "secondary")]
LARGE = "_100M"  # what the ~100M grid's size axis adds to an arm's run name (experiments/knowledge-100m.yaml)
# A3: amendment 2; A3t: amendment 3, A3's data built with A1's tokenizer (a 100M arm only, no 20M twin).
LARGE_ARMS = ["A1_verbatim" + LARGE, "A2_lenses" + LARGE, "A3_renderings" + LARGE, "A3t_renderings_a1_tokenizer" + LARGE]
EQUAL_READS = [("A3t_renderings_a1_tokenizer", "A1_verbatim", "primary"), ("A3t_renderings_a1_tokenizer", "A3_renderings", "secondary")]
# Within the size: both primary contrasts and amendment 3's; across sizes: each 100M arm against its 20M twin.
LARGE_CONTRASTS = ([(b + LARGE, a + LARGE, kind) for b, a, kind in CONTRASTS if kind == "primary"]
                   + [(b + LARGE, a + LARGE, kind) for b, a, kind in EQUAL_READS]
                   + [(arm, arm.removesuffix(LARGE), "size") for arm in LARGE_ARMS if arm.removesuffix(LARGE) in ARMS])
FIRST_SEEDS = [1, 2, 3, 4]  # run on the code before amendment 1 (docs/studies/knowledge.md); seed 5 on later code
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


def build_arm(arm: str) -> str:
    """The arm whose build `arm` reads: sizes share their arm's build."""
    return arm.removesuffix(LARGE)


def kept_build(run: Path, arm: str, suffix: str) -> Path:
    """A build's file kept beside the runs folder (manifests/ARM.SUFFIX), for a run copied without its dataset/."""
    return run.parent.parent / "manifests" / f"{build_arm(arm)}.{suffix}"


def manifest_of(run: Path, arm: str) -> dict:
    own = run / "dataset" / "manifest.json"
    if own.exists():
        return json.loads(own.read_text(encoding="utf-8"))
    return json.loads(gzip.decompress(kept_build(run, arm, "json.gz").read_bytes()))


def reads_of(run: Path, arm: str, manifest: dict) -> dict[str, int] | None:
    segments = run / "dataset" / "segments_train.npz"
    if segments.exists():
        return reads(segments, manifest)
    kept = kept_build(run, arm, "reads.json")
    return json.loads(kept.read_text(encoding="utf-8")) if kept.exists() else None


def figures(run: Path, arm: str) -> dict:
    ev = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    manifest = manifest_of(run, arm)
    out = scores(ev, manifest)
    people = reads_of(run, arm, manifest)
    out["exposures"] = None if people is None else float(np.mean(list(people.values()))) if people else 0.0
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
    anyone can recount; a run read from OUT/runs itself stays as it is."""
    for by_seed in runs.values():
        for run in by_seed.values():
            for name in kept:
                if (run / name).exists():
                    target = out / "runs" / run.name / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not (target.exists() and target.samefile(run / name)):
                        shutil.copy2(run / name, target)


def reads(segments: Path, manifest: dict) -> dict[str, int]:
    """Times each test person's biographies (any rendering) were read in training: occurrences of a
    biography's first scene (one that is cut in two counts once)."""
    seg = np.load(segments)
    people: dict[str, int] = defaultdict(int)
    for doc in seg["doc"][seg["scene"] == 0]:
        name = manifest["docs"][doc]
        tags = manifest["doc_tags"][name]
        if tags.get("kind") == "biography" and tags.get("split") == "train":
            people[tags["person"]] += 1
    return dict(sorted(people.items()))


def keep_builds(runs: dict[str, dict[int, Path]], out: Path) -> None:
    """Each build's manifest (gzipped, no timestamp) and test-person reads once, under OUT/manifests/."""
    (out / "manifests").mkdir(exist_ok=True)
    for arm, by_seed in runs.items():
        for run in by_seed.values():
            if (run / "dataset" / "manifest.json").exists():
                manifest = (run / "dataset" / "manifest.json").read_bytes()
                (out / "manifests" / f"{build_arm(arm)}.json.gz").write_bytes(gzip.compress(manifest, mtime=0))
                people = reads_of(run, arm, json.loads(manifest))
                (out / "manifests" / f"{build_arm(arm)}.reads.json").write_text(json.dumps(people, indent=1) + "\n", encoding="utf-8")
                break
        else:  # copies without their dataset/: the files kept beside their runs folder
            run = next(iter(by_seed.values()))
            for suffix in ("json.gz", "reads.json"):
                source, copy = kept_build(run, arm, suffix), out / "manifests" / f"{build_arm(arm)}.{suffix}"
                if source.exists() and not (copy.exists() and copy.samefile(source)):
                    shutil.copy2(source, copy)


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


COLUMNS = [("question/train/mc", "test people MC (q)"), ("question/train/em", "test people EM (q)"),
           ("statement/train/mc", "test people MC (stmt)"), ("statement/train/em", "test people EM (stmt)"),
           ("question/qa_trained/mc", "QA-trained MC"), ("question/heldout/mc", "never-read MC"),
           ("bpb/en", "held-out bpb en"), ("bpb/ru", "held-out bpb ru"), ("wikitext_bpb", "WikiText-2 bpb"),
           ("cloze/heldout", "cloze held-out"), ("memorization_gap_top", "loss gap, most-read bucket"),
           ("exposures", "reads per test person")]


def per_arm(table: dict, arms: list[str]) -> list[str]:
    lines = ["| arm | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for arm in arms:
        cells = [format_ci(*mean_ci([s.get(key) for s in table[arm].values()])[:2], digits=3) for key, _ in COLUMNS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def detectable(differences: list[float]) -> float:
    """The paired difference detected with 80% power by a two-sided 5% t test on n − 1 df, at the
    observed SD of the differences: (t_0.975 + t_0.80) x SD / sqrt(n), the pre-registration's rule."""
    n = len(differences)
    if n < 2:
        return float("nan")
    return float((student_t.ppf(0.975, n - 1) + student_t.ppf(0.80, n - 1)) * np.std(differences, ddof=1) / np.sqrt(n))


def paired(table: dict, runs: dict, contrasts: list[tuple[str, str, str]], qa: dict, only: list[int] | None = None) -> list[str]:
    """B − A paired by seed (the seeds both arms have, within `only` when given): Student's t with
    n − 1 df, the item bootstrap, and the smallest MC difference these seeds' spread detects."""
    lines = ["| contrast | kind | seeds | MC test people (q) | per seed | item bootstrap | detectable at 80% (MC q) | EM test people (q) | MC (stmt) | MC QA-trained | held-out bpb en | held-out bpb ru |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, a, kind in contrasts:
        if a not in table or b not in table:
            continue
        seeds = sorted(s for s in set(table[a]) & set(table[b]) if only is None or s in only)

        def delta(key: str) -> str:
            return format_ci(*mean_ci([table[b][s][key] - table[a][s][key] for s in seeds
                                       if table[b][s].get(key) is not None and table[a][s].get(key) is not None])[:2], digits=3)

        mc = [table[b][s]["question/train/mc"] - table[a][s]["question/train/mc"] for s in seeds]
        per_seed = ", ".join(f"{d:+.3f}" for d in mc)
        boot = item_bootstrap(runs, b, a, seeds, qa)
        lines.append(f"| {b} − {a} | {kind} | {len(seeds)} | {delta('question/train/mc')} | {per_seed} | {boot} | {detectable(mc):.3f} | "
                     f"{delta('question/train/em')} | {delta('statement/train/mc')} | {delta('question/qa_trained/mc')} | "
                     f"{delta('bpb/en')} | {delta('bpb/ru')} |")
    return lines


def by_language(table: dict, arms: list[str]) -> list[str]:
    lines = ["| arm | en | ru |", "|---|---|---|"]
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(format_ci(*mean_ci([s.get(f"question/train/mc/{lang}") for s in table[arm].values()])[:2])
                                                for lang in ("en", "ru")) + " |")
    return lines


PRIMARY = [(b, a) for b, a, kind in CONTRASTS if kind == "primary"]


def across_sizes(table: dict) -> list[str]:
    """Each primary contrast (B − A) at 100M minus the same at 20M, paired by seed: whether the 20M
    answer holds, as description."""
    keys = [("question/train/mc", "MC test people (q)"), ("question/train/em", "EM test people (q)"),
            ("statement/train/mc", "MC (stmt)"), ("bpb/en", "held-out bpb en"), ("bpb/ru", "held-out bpb ru")]
    lines = ["| contrast | seeds | " + " | ".join(k[1] for k in keys) + " | per seed (MC q) |", "|---|---|" + "---|" * len(keys) + "---|"]
    for b, a in PRIMARY:
        arms = [a, b, a + LARGE, b + LARGE]
        seeds = sorted(set.intersection(*(set(table.get(arm, {})) for arm in arms)))

        def change(key: str, s: int) -> float:
            return (table[b + LARGE][s][key] - table[a + LARGE][s][key]) - (table[b][s][key] - table[a][s][key])

        if seeds:
            short = f"({b.split('_')[0]} − {a.split('_')[0]})"
            lines.append(f"| {short} at 100M − {short} at 20M | {len(seeds)} | "
                         + " | ".join(format_ci(*mean_ci([change(key, s) for s in seeds])[:2], digits=3) for key, _ in keys)
                         + " | " + ", ".join(f"{change('question/train/mc', s):+.3f}" for s in seeds) + " |")
    return lines


def holds(table: dict) -> list[str]:
    """Amendment 1's rule, per primary contrast at 100M: the 20M answer holds if the 100M contrast's
    95% interval (test-people MC, question form) contains 0 and both 100M arms' test-people MC
    intervals contain chance (0.25)."""
    chance = 0.25
    lines = ["| contrast at 100M | seeds | B − A (MC q) | contains 0 | A: MC q | contains chance | B: MC q | contains chance | the 20M answer holds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b, a in (pair for pair in PRIMARY if all(arm + LARGE in table for arm in pair)):
        b, a = b + LARGE, a + LARGE
        seeds = sorted(set(table[a]) & set(table[b]))
        diff, half, _ = mean_ci([table[b][s]["question/train/mc"] - table[a][s]["question/train/mc"] for s in seeds])
        arms = [mean_ci([table[arm][s]["question/train/mc"] for s in seeds])[:2] for arm in (a, b)]
        zero = abs(diff) <= half
        at_chance = [abs(mean - chance) <= h for mean, h in arms]
        lines.append(f"| {b} − {a} | {len(seeds)} | {format_ci(diff, half)} | {'yes' if zero else 'no'} | "
                     + " | ".join(f"{format_ci(*arm)} | {'yes' if inside else 'no'}" for arm, inside in zip(arms, at_chance))
                     + f" | {'yes' if zero and all(at_chance) else 'no'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--qa", type=Path, help="the study's QA.jsonl, when the run folders lack theirs (`ltm facts`)")
    args = parser.parse_args()
    runs = load(args.dirs)
    args.out.mkdir(parents=True, exist_ok=True)
    table = {arm: {seed: figures(run, arm) for seed, run in sorted(runs[arm].items())} for arm in ARMS + LARGE_ARMS if arm in runs}
    qa_files = ([args.qa] if args.qa else []) + [run / "qa.jsonl" for arm in table for run in runs[arm].values()]
    qa_pairs = {p.id: p for path in qa_files if path.exists()
                for p in map(QAPair.model_validate_json, path.read_text(encoding="utf-8").splitlines())}
    small = [arm for arm in ARMS if arm in table]
    large = [arm for arm in LARGE_ARMS if arm in table]

    lines = ["# Study 2 results (generated by experiments/knowledge_report.py)", "",
             "Seeds per arm: " + ", ".join(f"{arm} {sorted(table[arm])}" for arm in table), ""]
    lines += ["## Per arm (mean ± 95% CI over seeds)", "", *per_arm(table, small)]
    lines += ["", "## Paired by seed (B − A; mean, 95% t interval; item bootstrap 95% interval)", "",
              *paired(table, runs, CONTRASTS, qa_pairs)]
    lines += ["", "## Test people by language, MC (question form)", "", *by_language(table, small)]
    if any(seed not in FIRST_SEEDS for arm in small for seed in table[arm]):
        lines += ["", f"## Sensitivity: seeds {FIRST_SEEDS[0]}–{FIRST_SEEDS[-1]} alone (the code before amendment 1)", "",
                  *paired(table, runs, CONTRASTS, qa_pairs, only=FIRST_SEEDS)]
    if large:
        lines += ["", f"## ~100M size ({', '.join(arm.split('_')[0] for arm in large)}): per arm (mean ± 95% CI over seeds)", "",
                  *per_arm(table, large)]
        lines += ["", "## ~100M size: paired by seed (B − A; the size contrasts pair each 100M run with its 20M twin)", "",
                  *paired(table, runs, LARGE_CONTRASTS, qa_pairs)]
        lines += ["", "## ~100M size: test people by language, MC (question form)", "", *by_language(table, large)]
        lines += ["", "## Does the 20M answer hold at 100M? Amendment 1's rule (its contrast is A2 − A1; A3 − A1 the same way)", "",
                  *holds(table)]
        lines += ["", "## The contrasts' change between sizes (paired by seed; description, not a test)", "", *across_sizes(table)]
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plots(table, runs, args.out)
    keep_builds({arm: runs[arm] for arm in table}, args.out)
    keep_raw({arm: runs[arm] for arm in table}, args.out, KEPT)
    print(f"wrote {args.out / 'results.md'}")


def plots(table: dict, runs: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(table)), 4))
    for x, (arm, seeds) in enumerate(table.items()):
        for form, offset, marker in (("question", -0.12, "o"), ("statement", 0.12, "s")):
            values = [s[f"{form}/train/mc"] for s in seeds.values()]
            ax.scatter([x + offset] * len(values), values, marker=marker, color="C0" if form == "question" else "C1",
                       label=f"{form} form" if x == 0 else None)
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(len(table)), list(table), rotation=25, ha="right")
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
