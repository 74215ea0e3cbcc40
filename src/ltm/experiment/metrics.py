"""The figures of one finished run that an experiment compares, read from its eval.json."""

from __future__ import annotations

import json
from pathlib import Path

# (key, label, digits): the columns of the study table, in order.
COLUMNS = [
    ("heldout_bpb", "held-out bpb", 3),
    ("wikitext_bpb", "WikiText-2 bpb", 3),
    ("memorized_exact", "memorized (exact)", 3),
    ("memorized_token_match", "memorized (token match)", 3),
    ("control_exact", "control (exact)", 3),
    ("distinct_2", "distinct-2", 3),
]


def run_metrics(run_dir: Path) -> dict:
    ev = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    memo = ev.get("memorization", {})
    metrics = {
        "heldout_bpb": ev["heldout_bpb"],
        "unigram_bpb": ev["baselines"]["unigram_bpb"],
        "untrained_bpb": ev["baselines"]["untrained_bpb"],
        "wikitext_bpb": ev.get("wikitext", {}).get("bpb"),
        "memorized_exact": memo.get("overall", {}).get("exact"),
        "memorized_token_match": memo.get("overall", {}).get("token_match"),
        "control_exact": memo.get("overall", {}).get("control_exact"),
        "distinct_2": ev.get("diversity", {}).get("distinct_2"),
        "memorization_by_times_seen": {k: v["exact"] for k, v in memo.get("by_times_seen", {}).items()},
        "probes": {k: v["model_rate"] for k, v in ev.get("probes", {}).items()},
        "probes_data": {k: v["data_rate"] for k, v in ev.get("probes", {}).items()},
    }
    # Questions about a fact set, question form: the test people's (biographies read, pairs not), the
    # QA-trained people's and the never-read people's (chance).
    qa_groups = (ev.get("qa") or {}).get("forms", {}).get("question", {})
    for group, key in (("train", "qa"), ("qa_trained", "qa_trained"), ("heldout", "qa_heldout")):
        if group in qa_groups:
            metrics[f"{key}_mc"], metrics[f"{key}_em"] = qa_groups[group]["mc"], qa_groups[group]["em"]
    metrics["heldout_bpb_by_language"] = {k: v["bpb"] for k, v in ev.get("heldout_by", {}).get("language", {}).items()}
    metrics["memorization_gap_by_times_seen"] = {k: v["gap"] for k, v in memo.get("gap_by_times_seen", {}).items()}
    cloze = (ev.get("cloze") or {}).get("by_split", {})
    for split in ("heldout", "train"):
        if split in cloze:
            metrics[f"cloze_{split}_accuracy"] = cloze[split]["accuracy"]
    curve = run_dir / "train" / "metrics.jsonl"
    if curve.exists():
        rows = [json.loads(line) for line in curve.read_text(encoding="utf-8").splitlines() if line.strip()]
        metrics["heldout_curve"] = [[r["tokens"], r["heldout_loss"]] for r in rows if r.get("heldout_loss") is not None]
        metrics["train_seconds"] = rows[-1]["elapsed_s"] if rows else None
    return metrics
