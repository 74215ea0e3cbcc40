"""The HTML report: runs side by side in one table, what each run was (config, regime, curriculum,
passes over its data, the config file itself), flags (overfitting), then figures (loss curves with
the curriculum's phase changes, bits per byte by phase, memorization against times seen, probe rates
model vs data) and samples. One file, figures inlined."""

from __future__ import annotations

import html
import json
from pathlib import Path

import yaml

from ltm.io import atomic_write
from ltm.report.diagnosis import overfitting, passes, phase_starts
from ltm.report.figures import data_uri, grouped_bars, loss_curves, memorization_curves

COLUMNS = ["run", "held-out bpb", "unigram bpb", "untrained bpb", "WikiText-2 bpb", "memorized (exact)", "control", "distinct-2",
           "final train loss", "tokens trained", "tokens/s"]


def _read_run(run: Path) -> dict:
    eval_path = run / "eval.json"
    if not eval_path.exists():
        raise FileNotFoundError(f"{run}: no eval.json; run `ltm eval {run}` first")
    metrics_path = run / "train" / "metrics.jsonl"
    metrics = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()] if metrics_path.exists() else []
    config_text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").exists() else ""
    manifest_path = run / "dataset" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    config = yaml.safe_load(config_text) or {}
    train, model = config.get("train", {}), config.get("model", {})
    seq_len, steps = model.get("max_seq_len"), (metrics[-1]["step"] if metrics else train.get("steps"))
    tokens_per_step = (train.get("batch_size") or 0) * (seq_len or 0)
    starts, read = [], None
    if tokens_per_step and steps:
        starts = phase_starts(run / "dataset", manifest.get("phases", []), tokens_per_step, seq_len, steps)
        read = passes(run / "dataset", tokens_per_step, seq_len, steps)
    return {"name": run.name, "metrics": metrics, "eval": json.loads(eval_path.read_text(encoding="utf-8")), "config": config,
            "config_text": config_text, "manifest": manifest, "phase_starts": starts, "passes": read}


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


def _setup(runs: list[dict]) -> str:
    """What each run was: data regime, curriculum, tokens, passes, model and training settings, and
    its config file whole."""
    rows, files = [], []
    for run in runs:
        config, manifest = run["config"], run["manifest"]
        model, train, initiation = config.get("model", {}), config.get("train", {}), config.get("initiation", {})
        train_stats = manifest.get("stats", {}).get("train", {})
        cells = [run["name"], manifest.get("regime", "—"), manifest.get("curriculum", "—"), " → ".join(manifest.get("phases", [])) or "—",
                 f"{train_stats.get('tokens', 0):,} of {train_stats.get('data_tokens', 0):,}" if train_stats else "—",
                 _fmt(run["passes"], ".1f"),
                 f"{model.get('d_model', '?')} x {model.get('n_layers', '?')}, context {model.get('max_seq_len', '?')}" if model else "—",
                 f"{train.get('steps', '?')} x {train.get('batch_size', '?')}, lr {train.get('lr', '?')}" if train else "—",
                 initiation.get("mode", "none") if config else "—", config.get("seed", "—")]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        if run["config_text"]:
            files.append(f"<details><summary>{html.escape(run['name'])}: config.yaml</summary><pre>{html.escape(run['config_text'])}</pre></details>")
    head = ["run", "regime", "curriculum", "phases", "train tokens (of the data's)", "passes over the data", "model (width x layers)",
            "steps x batch", "initiation", "seed"]
    return ("<h2>Runs</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>" + "".join(files))


def _flags(runs: list[dict]) -> str:
    found = [(run["name"], overfitting(run["metrics"])) for run in runs]
    return "".join(f'<p class="flag"><b>{html.escape(name)}</b>: {html.escape(text)}</p>' for name, text in found if text)


def _phase_note(runs: list[dict]) -> str:
    notes = []
    for run in runs:
        first = list(dict.fromkeys(name for _, name in run["phase_starts"]))
        steps = {name: min(step for step, n in run["phase_starts"] if n == name) for name in first}
        if len(first) > 1:
            notes.append(f"{run['name']}: " + ", ".join(f"{name} from step {steps[name]:.0f}" for name in first))
    return (f"<p>Dotted lines: where training begins to read a curriculum phase (on every pass over the data). "
            f"{html.escape('; '.join(notes))}.</p>" if notes else "")


def _probe_table(runs: list[dict]) -> str:
    rows = []
    for run in runs:
        validation = run["eval"].get("probe_validation", {})
        for probe, rates in run["eval"].get("probes", {}).items():
            check = validation.get(probe, {})
            interval = rates.get("model_rate_ci95")
            model = f"{rates['model_rate']:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}], {rates['model_events']} events" if interval else "")
            rows.append(f"<tr><td>{html.escape(run['name'])}</td><td>{html.escape(probe)}</td><td>{model}</td>"
                        f"<td>{rates['data_rate']:.2f}</td><td>{_fmt(check.get('precision'), '.2f')}</td><td>{_fmt(check.get('recall'), '.2f')}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Thinking-behaviour probes</h2><p>Matches per 1,000 tokens in the model's samples and in its training text "
            "(a model that only copies shows the data's rates; the model's with its exact Poisson 95% interval and event count), and each probe's precision and recall on ltm's labelled set.</p>"
            "<table><tr><th>run</th><th>probe</th><th>model</th><th>data</th><th>precision</th><th>recall</th></tr>" + "".join(rows) + "</table>")


def _understanding(runs: list[dict]) -> str:
    """QA accuracy by prompt form and group of people, cloze by split, held-out bpb by language and
    the memorization gap by times seen: one table per instrument, a row per run, where eval.json has it."""
    qa, cloze, language, gap = [], [], [], []
    for run in runs:
        ev, name = run["eval"], html.escape(run["name"])
        for form, groups in ((ev.get("qa") or {}).get("forms") or {}).items():
            for group, g in groups.items():
                qa.append(f"<tr><td>{name}</td><td>{html.escape(form)}</td><td>{html.escape(group)}</td><td>{g['n']}</td>"
                          f"<td>{g['mc']:.1%} [{g['mc_ci95'][0]:.0%}, {g['mc_ci95'][1]:.0%}]</td><td>{g['em']:.1%}</td></tr>")
        for split, g in ((ev.get("cloze") or {}).get("by_split") or {}).items():
            cloze.append(f"<tr><td>{name}</td><td>{html.escape(split)}</td><td>{g['n']}</td>"
                         f"<td>{g['accuracy']:.1%} [{g['accuracy_ci95'][0]:.0%}, {g['accuracy_ci95'][1]:.0%}]</td><td>{g['chance']:.0%}</td></tr>")
        for lang, g in ev.get("heldout_by", {}).get("language", {}).items():
            language.append(f"<tr><td>{name}</td><td>{html.escape(lang)}</td><td>{g['bpb']:.3f}</td><td>{g['bytes']:,}</td></tr>")
        for bucket, g in ev.get("memorization", {}).get("gap_by_times_seen", {}).items():
            gap.append(f"<tr><td>{name}</td><td>{html.escape(bucket)}</td><td>{g['n']}</td><td>{g['train_nll']:.3f}</td>"
                       f"<td>{g['heldout_nll']:.3f}</td><td>{g['gap']:.3f}</td></tr>")
    tables = [
        ("Questions about the fact set", "Multiple choice by log-likelihood (chance 25%, Wilson 95% interval) and exact match of the greedy "
         "answer. train: biographies read, this question never; qa_trained: the question itself read; heldout: never read (the floor).",
         ["run", "form", "people", "n", "multiple choice", "exact match"], qa),
        ("Cloze on real text", "The masked content word ranked first among its candidates (Wilson 95% interval).",
         ["run", "text", "n", "accuracy", "chance"], cloze),
        ("Held-out bits per byte by language", "", ["run", "language", "bits per byte", "bytes"], language),
        ("Loss gap by times seen", "Teacher-forced loss (nats per token) of training sequences and of held-out sequences matched to them.",
         ["run", "times seen", "n", "training", "held-out", "gap"], gap),
    ]
    return "".join(f"<h2>{title}</h2>" + (f"<p>{note}</p>" if note else "") + "<table><tr>" + "".join(f"<th>{h}</th>" for h in head)
                   + "</tr>" + "".join(rows) + "</table>" for title, note, head, rows in tables if rows)


def write_report(runs: list[Path], out: Path) -> Path:
    loaded = [_read_run(Path(r)) for r in runs]
    figures = [_figure("Loss", loss_curves({r["name"]: r["metrics"] for r in loaded}, {r["name"]: r["phase_starts"] for r in loaded}))
               + _phase_note(loaded)]
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
.flag {{ color: #a40000; }}
</style></head><body>
<h1>ltm report</h1>
<p>Bits per byte on held-out documents (lower is better) against a unigram model and the untrained network; memorization is the
share of 32-token training prefixes whose exact 32-token continuation the model produces greedily, next to a control model.</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in COLUMNS)}</tr>
{''.join(_row(r) for r in loaded)}
</table>
{_flags(loaded)}
{_setup(loaded)}
{''.join(figures)}
{_understanding(loaded)}
{_probe_table(loaded)}
<h2>Samples</h2>
{samples or '<p>No sample prompts in the config.</p>'}
</body></html>
"""
    with atomic_write(out) as handle:
        handle.write(page)
    return out
