"""The study report, from the registry alone (so `ltm runs compare` reproduces it): a table of
mean ± 95% CI over seeds per cell, and figures — held-out loss against tokens, memorization against
times seen, probe rates — in markdown and HTML."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ltm.experiment.metrics import COLUMNS
from ltm.experiment.registry import Registry
from ltm.experiment.stats import format_ci, mean_ci
from ltm.io import atomic_write
from ltm.report.figures import COLOURS, _png, data_uri, grouped_bars, plt


def _by_cell(registry: Registry, experiment: str) -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = defaultdict(list)
    for row in registry.runs(experiment):
        if row["status"] == "done" and row["metrics"]:
            cells[row["cell"]].append(json.loads(row["metrics"]))
    return cells


def study_table(registry: Registry, experiment: str) -> str:
    """The markdown table: one row per cell, mean ± 95% CI over its seeds for each metric."""
    cells = _by_cell(registry, experiment)
    header = "| cell | seeds | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for cell, runs in cells.items():
        values = [format_ci(*mean_ci([r.get(key) for r in runs])[:2], digits=digits) for key, _, digits in COLUMNS]
        lines.append(f"| {cell} | {len(runs)} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def unfinished(registry: Registry, experiment: str) -> str:
    """The runs a table leaves out, one line each: failed (with the error's last line), not run,
    and seeds a cell lacks that other cells have."""
    rows = registry.runs(experiment)
    seeds = sorted({row["seed"] for row in rows})
    lines = []
    for row in rows:
        if row["status"] == "failed":
            last = (row["error"] or "").strip().splitlines()[-1:] or ["no log"]
            lines.append(f"- {row['cell']} seed {row['seed']}: failed ({last[0][:200]})")
        elif row["status"] != "done":
            lines.append(f"- {row['cell']} seed {row['seed']}: not finished ({row['status']})")
    for cell in dict.fromkeys(row["cell"] for row in rows):
        have = {row["seed"] for row in rows if row["cell"] == cell}
        lines += [f"- {cell} seed {seed}: missing (no run recorded)" for seed in seeds if seed not in have]
    return f"{len(lines)} run(s) left out of the table:\n" + "\n".join(lines) if lines else ""


def paired_table(registry: Registry, experiment: str, baseline: str, metrics: tuple[str, ...] = ("heldout_bpb", "wikitext_bpb")) -> str:
    """Each cell minus the baseline cell, seed by seed (same seed = same held-out documents and
    same data selection), then mean ± 95% CI of those differences: the comparison the seeds pair."""
    by_seed: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in registry.runs(experiment):
        if row["status"] == "done" and row["metrics"]:
            by_seed[row["cell"]][row["seed"]] = json.loads(row["metrics"])
    if baseline not in by_seed:
        raise ValueError(f"no finished runs of baseline cell {baseline!r}; cells: {', '.join(by_seed)}")
    labels = {key: label for key, label, _ in COLUMNS}
    lines = ["| cell | paired seeds | " + " | ".join(f"Δ {labels.get(m, m)}" for m in metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    for cell, runs in by_seed.items():
        seeds = sorted(set(runs) & set(by_seed[baseline]))
        deltas = [format_ci(*mean_ci([runs[s][m] - by_seed[baseline][s][m] for s in seeds
                                      if runs[s].get(m) is not None and by_seed[baseline][s].get(m) is not None])[:2], digits=3)
                  for m in metrics]
        lines.append(f"| {cell} | {len(seeds)} | " + " | ".join(deltas) + " |")
    return "\n".join(lines)


def _curves(cells: dict[str, list[dict]]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for (cell, runs), colour in zip(cells.items(), COLOURS * 10):
        for i, run in enumerate(runs):
            points = run.get("heldout_curve") or []
            if points:
                ax.plot(*zip(*points), "-", color=colour, alpha=0.7, label=cell if i == 0 else None)
    ax.set(xlabel="training tokens", ylabel="held-out loss (nats per token)", title="Held-out loss vs tokens (each seed a line)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no finished run: nothing to label
        ax.legend(fontsize=7)
    return _png(fig)


def _memorization(cells: dict[str, list[dict]]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for (cell, runs), colour in zip(cells.items(), COLOURS * 10):
        buckets = sorted({b for r in runs for b in r.get("memorization_by_times_seen", {})}, key=lambda b: int(b.split("-")[0]))
        if buckets:
            means = [np.mean([r["memorization_by_times_seen"].get(b, np.nan) for r in runs]) for b in buckets]
            ax.plot(buckets, means, "o-", color=colour, label=cell)
    ax.set(xlabel="times the text was seen in training", ylabel="exact 32-token continuation (mean over seeds)",
           title="Memorization vs times seen", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no finished run: nothing to label
        ax.legend(fontsize=7)
    return _png(fig)


def write_experiment_report(registry: Registry, experiment: str, workspace: Path) -> Path:
    cells = _by_cell(registry, experiment)
    table = study_table(registry, experiment)
    probes = {cell: {k: float(np.mean([r["probes"].get(k, np.nan) for r in runs])) for k in runs[0].get("probes", {})}
              for cell, runs in cells.items() if runs and runs[0].get("probes")}
    figures = {"heldout_vs_tokens.png": _curves(cells), "memorization_vs_times_seen.png": _memorization(cells)}
    if probes:
        figures["probe_rates.png"] = grouped_bars("Probe rates per 1,000 generated tokens (mean over seeds)", "per 1,000 tokens", probes)
    for name, png in figures.items():
        with atomic_write(workspace / name, "wb", encoding=None) as handle:
            handle.write(png)
    left_out = unfinished(registry, experiment)
    note = f"\n\n{left_out}" if left_out else ""
    markdown = f"# Experiment {experiment}\n\nMean ± 95% confidence interval (Student's t) over seeds.\n\n{table}{note}\n\n" + \
        "".join(f"![{n}]({n})\n\n" for n in figures)
    with atomic_write(workspace / "report.md") as handle:
        handle.write(markdown)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
                   for line in table.splitlines()[2:])
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(experiment)}</title><style>body{{font-family:system-ui;"
            f"max-width:64rem;margin:2rem auto}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}table{{border-collapse:collapse}}</style>"
            f"</head><body><h1>Experiment {html.escape(experiment)}</h1><p>Mean ± 95% CI over seeds.</p><table><tr>{head}</tr>{rows}</table>"
            f"<pre>{html.escape(note.strip())}</pre>" + "".join(f"<img alt='{n}' src='{data_uri(png)}'>" for n, png in figures.items()) + "</body></html>")
    with atomic_write(workspace / "report.html") as handle:
        handle.write(page)
    return workspace / "report.md"
