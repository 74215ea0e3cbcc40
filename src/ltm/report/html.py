"""The HTML report: runs side by side in one table, then figures (loss curves, bits per byte by
phase, memorization against times seen, probe rates model vs data) and samples. One file, figures
inlined."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ltm.io import atomic_write
from ltm.report.figures import data_uri, grouped_bars, loss_curves, memorization_curves

COLUMNS = ["run", "held-out bpb", "unigram bpb", "untrained bpb", "WikiText-2 bpb", "memorized (exact)", "control", "distinct-2",
           "final train loss", "tokens trained", "tokens/s"]


def _read_run(run: Path) -> dict:
    eval_path = run / "eval.json"
    if not eval_path.exists():
        raise FileNotFoundError(f"{run}: no eval.json; run `ltm eval {run}` first")
    metrics_path = run / "train" / "metrics.jsonl"
    metrics = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()] if metrics_path.exists() else []
    return {"name": run.name, "metrics": metrics, "eval": json.loads(eval_path.read_text(encoding="utf-8"))}


def _fmt(value, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def _row(run: dict) -> str:
    ev, last = run["eval"], (run["metrics"][-1] if run["metrics"] else {})
    memo = ev.get("memorization", {}).get("overall", {})
    cells = [
        run["name"], _fmt(ev["heldout_bpb"]), _fmt(ev["baselines"]["unigram_bpb"]), _fmt(ev["baselines"]["untrained_bpb"]),
        _fmt(ev.get("wikitext", {}).get("bpb")), _fmt(memo.get("exact"), ".1%"), _fmt(memo.get("control_exact"), ".1%"),
        _fmt(ev.get("diversity", {}).get("distinct_2")), _fmt(last.get("loss")), f"{last.get('tokens', 0):,}", f"{last.get('tokens_per_s', 0):,.0f}",
    ]
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _figure(title: str, png: bytes) -> str:
    return f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="{data_uri(png)}">'


def _probe_table(runs: list[dict]) -> str:
    rows = []
    for run in runs:
        validation = run["eval"].get("probe_validation", {})
        for probe, rates in run["eval"].get("probes", {}).items():
            check = validation.get(probe, {})
            rows.append(f"<tr><td>{html.escape(run['name'])}</td><td>{html.escape(probe)}</td><td>{rates['model_rate']:.2f}</td>"
                        f"<td>{rates['data_rate']:.2f}</td><td>{_fmt(check.get('precision'), '.2f')}</td><td>{_fmt(check.get('recall'), '.2f')}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Thinking-behaviour probes</h2><p>Matches per 1,000 tokens in the model's samples and in its training text "
            "(a model that only copies shows the data's rates), and each probe's precision and recall on ltm's labelled set.</p>"
            "<table><tr><th>run</th><th>probe</th><th>model</th><th>data</th><th>precision</th><th>recall</th></tr>" + "".join(rows) + "</table>")


def write_report(runs: list[Path], out: Path) -> Path:
    loaded = [_read_run(Path(r)) for r in runs]
    figures = [_figure("Loss", loss_curves({r["name"]: r["metrics"] for r in loaded}))]
    phases = {r["name"]: {k: v["bpb"] for k, v in r["eval"].get("heldout_by", {}).get("phase", {}).items()} for r in loaded}
    if any(phases.values()):
        figures.append(_figure("Held-out bits per byte by phase", grouped_bars("Held-out bits per byte by phase", "bits per byte", phases)))
    lenses = {r["name"]: {k: v["bpb"] for k, v in r["eval"].get("heldout_by", {}).get("lens", {}).items()} for r in loaded}
    if any(len(v) > 1 for v in lenses.values()):
        figures.append(_figure("Held-out bits per byte by lens", grouped_bars("Held-out bits per byte by lens", "bits per byte", lenses)))
    memo = {r["name"]: r["eval"].get("memorization", {}) for r in loaded}
    if any(m.get("by_times_seen") for m in memo.values()):
        figures.append(_figure("Memorization vs times seen", memorization_curves(memo)))
    for r in loaded:
        probes = r["eval"].get("probes", {})
        if probes:
            series = {"model": {k: v["model_rate"] for k, v in probes.items()}, "training data": {k: v["data_rate"] for k, v in probes.items()}}
            figures.append(_figure(f"Probe rates, model vs data: {r['name']}", grouped_bars(f"Probes per 1,000 tokens: {r['name']}", "per 1,000 tokens", series)))
    samples = "".join(
        f"<h3>{html.escape(r['name'])}</h3>" + "".join(f"<p><b>{html.escape(s['prompt'])}</b>{html.escape(s['text'])}</p>" for s in r["eval"].get("samples", []))
        for r in loaded
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ltm report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} p {{ white-space: pre-wrap; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>ltm report</h1>
<p>Bits per byte on held-out documents (lower is better) against a unigram model and the untrained network; memorization is the
share of 32-token training prefixes whose exact 32-token continuation the model produces greedily, next to a control model.</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in COLUMNS)}</tr>
{''.join(_row(r) for r in loaded)}
</table>
{''.join(figures)}
{_probe_table(loaded)}
<h2>Samples</h2>
{samples or '<p>No sample prompts in the config.</p>'}
</body></html>
"""
    with atomic_write(out) as handle:
        handle.write(page)
    return out
