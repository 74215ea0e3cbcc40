"""Study 3a's tables and figures (docs/studies/curriculum.md) from its run folders, as
pre-registered: per arm, mean and 95% interval over seeds of the area under the held-out curve,
final held-out bits per byte per language and per held-out document's phase, WikiText-2, and the
tokens to reach the shuffle arm's final loss; each contrast paired by seed (Student's t).

    python experiments/curriculum_report.py STUDY3 --out docs/studies/curriculum

STUDY3 is the folder study3_device.sh wrote its workspaces into (OUT/work) or where its archive
(OUT/study3-results.tar.gz) was unpacked: it holds curriculum/runs/ARM-sSEED-HASH/ and, in an
archive, curriculum/manifests/ARM.dataset.json.gz. Writes OUT/results.md, OUT/heldout_curves.png,
OUT/auc_by_arm.png, each run's small files under OUT/runs/, the registry and each arm's manifest.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knowledge_report import bpb_by_tag, curve, keep_raw, load  # noqa: E402

from ltm.experiment.stats import format_ci, mean_ci  # noqa: E402

ARMS = ["shuffle", "easy_hard", "hard_easy", "easy_hard_replay", "phases", "phases_replay"]
CONTRASTS = [("easy_hard", "shuffle", "primary"), ("phases", "shuffle", "primary"),
             ("hard_easy", "shuffle", "secondary"), ("easy_hard", "hard_easy", "secondary"),
             ("easy_hard_replay", "easy_hard", "secondary"), ("phases_replay", "phases", "secondary")]
KEPT = ["eval.json", "eval.samples.jsonl", "train/metrics.jsonl", "config.yaml", "times.json"]
PHASES = ["myth", "drama", "logic", "irony"]


def manifest_of(run: Path, root: Path, dataset: str = "dataset") -> dict:
    """The run's dataset manifest: in the run folder (a workspace), else the archive's copy of its arm's."""
    inside = run / dataset / "manifest.json"
    if inside.exists():
        return json.loads(inside.read_text(encoding="utf-8"))
    packed = root / "manifests" / f"{run.name.rsplit('-', 2)[0]}.{dataset}.json.gz"
    return json.loads(gzip.decompress(packed.read_bytes()))


def to_bpb(ev: dict) -> float:
    """Bits per byte per nat per token of the held-out split (one constant per build)."""
    return ev["heldout_tokens"] / ev["heldout_bytes"] / math.log(2)


def area(points: list[tuple[int, float]]) -> float:
    """The mean of the curve over training: its trapezoid integral over tokens, from the first
    measurement to the last, divided by the tokens between them."""
    tokens, loss = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    return float(np.sum((loss[1:] + loss[:-1]) / 2 * np.diff(tokens)) / (tokens[-1] - tokens[0]))


def reached(points: list[tuple[int, float]], target: float) -> float | None:
    """Training tokens at which the curve first reaches `target` (linear between measurements); None if never."""
    for (t0, l0), (t1, l1) in zip([points[0], *points], points):
        if l1 <= target:
            return float(t1) if l0 == l1 or t0 == t1 else t0 + (l0 - target) / (l0 - l1) * (t1 - t0)
    return None


def cell(values: list) -> str:
    """Mean ± 95% interval of a column; a column of text (the same in every row) as it is."""
    if values and isinstance(values[0], str):
        return values[0]
    return format_ci(*mean_ci(values)[:2], digits=3)


def arm_rows(table: dict[str, dict[int, dict]], columns: list[tuple[str, str]]) -> list[str]:
    """A markdown table: one row per arm, mean ± 95% CI over its seeds of each (key, heading)."""
    rows = ["| arm | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    return rows + [f"| {arm} | " + " | ".join(cell([s.get(k) for s in seeds.values()]) for k, _ in columns) + " |"
                   for arm, seeds in table.items()]


def paired_rows(table: dict[str, dict[int, dict]], contrasts: list[tuple[str, str, str]], keys: list[tuple[str, str]],
                listed: str, heading: str) -> list[str]:
    """A markdown table of contrasts B − A paired by seed (the seeds both arms have): mean ± 95% t
    interval of each key's difference, and the per-seed differences of `listed`."""
    rows = ["| contrast | kind | seeds | " + " | ".join(k[1] for k in keys) + f" | {heading} |", "|---|---|---|" + "---|" * (len(keys) + 1)]
    for b, a, kind in contrasts:
        if a not in table or b not in table:
            continue
        seeds = sorted(set(table[a]) & set(table[b]))

        def delta(key: str) -> str:
            return cell([table[b][s][key] - table[a][s][key] for s in seeds
                         if table[b][s].get(key) is not None and table[a][s].get(key) is not None])

        per_seed = ", ".join(f"{table[b][s][listed] - table[a][s][listed]:+.3f}" for s in seeds)
        rows.append(f"| {b} − {a} | {kind} | {len(seeds)} | " + " | ".join(delta(k) for k, _ in keys) + f" | {per_seed} |")
    return rows


def book_figures(run: Path, root: Path) -> dict:
    """Held-out bits per byte of the run's final model: all, per language, per held-out document's
    phase; WikiText-2."""
    ev = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    manifest = manifest_of(run, root)
    out = {"heldout_bpb": ev["heldout_bpb"], "wikitext_bpb": (ev.get("wikitext") or {}).get("bpb")}
    out.update({f"bpb/{lang}": v for lang, v in bpb_by_tag(ev, manifest, "lang").items()})
    out.update({f"phase/{p}": v for p, v in bpb_by_tag(ev, manifest, "phase").items()})
    return out


def figures(run: Path, root: Path) -> dict:
    points = curve(run)
    scale = to_bpb(json.loads((run / "eval.json").read_text(encoding="utf-8")))
    return {"auc_bpb": area(points) * scale, "final_curve_bpb": points[-1][1] * scale, "final_loss": points[-1][1],
            "budget": points[-1][0], **book_figures(run, root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study3", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = args.study3 / "curriculum"
    runs = load([root / "runs"])
    args.out.mkdir(parents=True, exist_ok=True)
    table = {arm: {seed: figures(run, root) for seed, run in sorted(runs[arm].items())} for arm in ARMS if arm in runs}
    for arm, seeds in table.items():  # speed: tokens to reach the shuffle arm's final loss of the same seed
        for seed, row in seeds.items():
            base = table.get("shuffle", {}).get(seed)
            hit = reached(curve(runs[arm][seed]), base["final_loss"]) if base else None
            row["reach_share"] = hit / row["budget"] if hit is not None else None
            row["reached"] = hit is not None
    lines = ["# Study 3a results (generated by experiments/curriculum_report.py)", "",
             "Seeds per arm: " + ", ".join(f"{arm} {sorted(table[arm])}" for arm in table), ""]
    columns = [("auc_bpb", "area under held-out curve (bpb)"), ("final_curve_bpb", "final held-out (curve, bpb)"),
               ("heldout_bpb", "final held-out bpb (eval)"), ("bpb/en", "held-out bpb en"), ("bpb/ru", "held-out bpb ru"),
               ("wikitext_bpb", "WikiText-2 bpb"), ("reach_share", "share of budget to reach shuffle's final loss")]
    for seeds in table.values():
        for row in seeds.values():
            row["reached_of"] = f"{sum(r['reached'] for r in seeds.values())}/{len(seeds)}"
    lines += ["## Per arm (mean ± 95% CI over seeds)", ""] + arm_rows(table, columns + [("reached_of", "runs that reached it")])
    lines += ["", "## Held-out bpb by the phase of the held-out document (mean ± 95% CI)", ""]
    lines += arm_rows(table, [(f"phase/{p}", p) for p in PHASES])
    keys = [("auc_bpb", "area (bpb)"), ("bpb/en", "held-out en"), ("bpb/ru", "held-out ru"), ("heldout_bpb", "held-out all"),
            ("wikitext_bpb", "WikiText-2")]
    lines += ["", "## Paired by seed (B − A; mean, 95% t interval)", ""] + paired_rows(table, CONTRASTS, keys, "auc_bpb", "area per seed")
    sd = [np.std([table[b][s]["auc_bpb"] - table[a][s]["auc_bpb"] for s in sorted(set(table[a]) & set(table[b]))], ddof=1)
          for b, a, _ in CONTRASTS if a in table and b in table and len(set(table[a]) & set(table[b])) > 1]
    if sd:
        lines += ["", f"Observed SD of the paired area differences: {min(sd):.4f}–{max(sd):.4f} bpb (smallest detectable "
                      f"effect at 80% power with 5 seeds ≈ 1.66 SD)."]
    lines += ["", "## Tokens by phase (each arm's build; the same for every seed)", "", "| arm | tokens by phase |", "|---|---|"]
    for arm in table:
        manifest = manifest_of(runs[arm][min(runs[arm])], root)
        lines.append(f"| {arm} | " + ", ".join(f"{p} {n:,}" for p, n in manifest["stats"]["train"]["tokens_by_phase"].items()) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plots(table, runs, root, args.out)
    keep_raw({arm: runs[arm] for arm in table}, args.out, KEPT)
    (args.out / "manifests").mkdir(exist_ok=True)
    for arm in table:
        manifest = manifest_of(runs[arm][min(runs[arm])], root)
        (args.out / "manifests" / f"{arm}.dataset.json.gz").write_bytes(gzip.compress(json.dumps(manifest).encode()))
    if (root / "ltm.sqlite").exists():
        shutil.copy2(root / "ltm.sqlite", args.out / "ltm.sqlite")
    print(f"wrote {args.out / 'results.md'}")


def _plots(table: dict, runs: dict, root: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for n, arm in enumerate(table):
        for seed, run in runs[arm].items():
            scale = to_bpb(json.loads((run / "eval.json").read_text(encoding="utf-8")))
            tokens, loss = zip(*curve(run))
            for ax in axes:
                ax.plot(tokens, [v * scale for v in loss], color=f"C{n}", alpha=0.6, lw=1, label=arm if seed == min(runs[arm]) else None)
        manifest = manifest_of(runs[arm][min(runs[arm])], root)
        edges = np.cumsum(list(manifest["stats"]["train"]["tokens_by_phase"].values()))[:-1]
        for edge in edges:
            axes[1].axvline(edge, color=f"C{n}", ls=":", lw=0.8)
    axes[0].set_title("held-out bits per byte over training")
    axes[1].set_title("the second half (dotted: phase boundaries)")
    last = max(p[0] for arm in runs for run in runs[arm].values() for p in curve(run))
    axes[1].set_xlim(last / 2, last)
    tail = [v * to_bpb(json.loads((run / "eval.json").read_text(encoding="utf-8"))) for arm in runs for run in runs[arm].values()
            for t, v in curve(run) if t >= last / 2]
    if tail:
        axes[1].set_ylim(min(tail) - 0.02, max(tail) + 0.02)
    for ax in axes:
        ax.set_xlabel("training tokens")
        ax.set_ylabel("held-out bpb")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "heldout_curves.png", dpi=120)
    fig, ax = plt.subplots(figsize=(8, 4))
    for x, (arm, seeds) in enumerate(table.items()):
        values = [s["auc_bpb"] for s in seeds.values()]
        ax.scatter([x] * len(values), values, color=f"C{x}")
        mean, half, _ = mean_ci(values)
        ax.errorbar([x + 0.15], [mean], yerr=[0 if math.isnan(half) else half], fmt="_", color="black", capsize=4)
    ax.set_xticks(range(len(table)), list(table), rotation=15)
    ax.set_ylabel("area under the held-out curve (bpb)")
    fig.tight_layout()
    fig.savefig(out / "auc_by_arm.png", dpi=120)


if __name__ == "__main__":
    main()
