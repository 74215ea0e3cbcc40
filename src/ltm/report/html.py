"""The HTML report: a table of runs side by side, the loss curves, samples. One file, figures inlined."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ltm.io import atomic_write
from ltm.report.figures import data_uri, loss_curves


def _read_run(run: Path) -> dict:
    metrics_path = run / "train" / "metrics.jsonl"
    eval_path = run / "eval.json"
    manifest_path = run / "dataset" / "manifest.json"
    if not eval_path.exists():
        raise FileNotFoundError(f"{run}: no eval.json; run `ltm eval {run}` first")
    return {
        "name": run.name,
        "metrics": [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if metrics_path.exists()
        else [],
        "eval": json.loads(eval_path.read_text(encoding="utf-8")),
        "stats": json.loads(manifest_path.read_text(encoding="utf-8"))["stats"] if manifest_path.exists() else {},
    }


def _row(run: dict) -> str:
    ev, metrics, stats = run["eval"], run["metrics"], run["stats"]
    last = metrics[-1] if metrics else {}
    cells = [
        run["name"],
        f"{ev['heldout_bpb']:.3f}",
        f"{ev['baselines']['unigram_bpb']:.3f}",
        f"{ev['baselines']['untrained_bpb']:.3f}",
        f"{last.get('loss', float('nan')):.3f}",
        f"{last.get('tokens', 0):,}",
        f"{last.get('tokens_per_s', 0):,.0f}",
        f"{stats.get('train', {}).get('documents', '?')} / {stats.get('heldout', {}).get('documents', '?')}",
    ]
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def write_report(runs: list[Path], out: Path) -> Path:
    loaded = [_read_run(Path(r)) for r in runs]
    figure = data_uri(loss_curves({r["name"]: r["metrics"] for r in loaded}))
    header = ["run", "held-out bpb", "unigram bpb", "untrained bpb", "final train loss", "tokens trained", "tokens/s", "docs train / held-out"]
    samples = "".join(
        f"<h3>{html.escape(r['name'])}</h3>"
        + "".join(
            f"<p><b>{html.escape(s['prompt'])}</b>{html.escape(s['text'])}</p>" for s in r["eval"].get("samples", [])
        )
        for r in loaded
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ltm report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} p {{ white-space: pre-wrap; }}
</style></head><body>
<h1>ltm report</h1>
<p>Bits per byte on held-out documents (lower is better). The unigram model and the untrained model are the references a trained model must beat.</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>
{''.join(_row(r) for r in loaded)}
</table>
<h2>Loss</h2>
<img alt="training and held-out loss per step" src="{figure}">
<h2>Samples</h2>
{samples or '<p>No sample prompts in the config.</p>'}
</body></html>
"""
    with atomic_write(out) as handle:
        handle.write(page)
    return out
