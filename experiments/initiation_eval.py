"""Study 3b's endpoints that need the models (docs/studies/initiation.md): for every final model of
the initiation workspace and for each seed's base (Study 3a's shuffle run), the held-out
assistant-turn loss on the held-out conversations in the chat form, and a reply to the first user
turn of each of them, counted by the probes.

    python experiments/initiation_eval.py OUT     # OUT holds curriculum/, initiation/ and specs/ (study3_device.sh)

Writes OUT/initiation/initiation_eval.json (one row per model) and the replies, kept whole, as
OUT/initiation/replies/RUN.jsonl (ltm.sample/1).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from ltm.dataset.reader import load_manifest, load_masked, load_split
from ltm.dataset.tokenizer import load_tokenizer, tokenizer_sha256
from ltm.eval.sample import continuations
from ltm.eval.samples import probe_counts, sample_records
from ltm.ingest.lang import detect_language
from ltm.io import write_json, write_jsonl
from ltm.markup import END_OF_TURN
from ltm.model.factory import load_model, pick_device
from ltm.model.modeling import IGNORE_INDEX
from ltm.serve.prompt import chat_prompt, encode
from ltm.train.data import LossMask, loss_windows
from ltm.train.loop import heldout_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study3 import DIALOGUES, base_runs  # noqa: E402

NAME = re.compile(r"^(?P<arm>.+)-s(?P<seed>\d+)-[0-9a-f]+$")
REPLY_TOKENS, TEMPERATURE, TOP_K = 64, 0.8, 50


def models(out: Path) -> list[tuple[str, int, Path, Path]]:
    """(arm, seed, run folder, final checkpoint) of every finished initiation run and every base."""
    found = [("base", seed, run, run / "train" / "checkpoint") for seed, run in sorted(base_runs(out).items())]
    for run in sorted((out / "initiation" / "runs").iterdir()):
        match = NAME.match(run.name)
        if match:
            found.append((match["arm"], int(match["seed"]), run, run / "initiation" / "checkpoint"))
    return [m for m in found if (m[3] / "config.json").exists()]


def chat_dataset(out: Path) -> Path:
    """The conversations' dataset in the chat form: a LoRA run's dataset-initiation (every seed
    builds the same one: the data seed and the tokenizer are fixed)."""
    for run in sorted((out / "initiation" / "runs").glob("lora-s*")):
        if (run / "dataset-initiation" / "manifest.json").exists():
            return run / "dataset-initiation"
    raise SystemExit(f"{out / 'initiation' / 'runs'}: no lora run with a dataset-initiation; run the initiation study first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    out = args.out.resolve()
    dataset = chat_dataset(out)
    manifest = load_manifest(dataset)
    heldout = json.loads((DIALOGUES / "chat" / "dialogues-heldout.json").read_text(encoding="utf-8"))
    prompts = [c["chat_messages"][0]["text"] for c in heldout]
    langs = [detect_language(p) for p in prompts]
    device = pick_device("auto")
    rows = []
    for arm, seed, run, checkpoint in models(out):
        if tokenizer_sha256(checkpoint) != manifest.tokenizer_sha256:
            raise SystemExit(f"{checkpoint}: another tokenizer than {dataset}'s; the study needs one tokenizer for all")
        tokenizer, model = load_tokenizer(checkpoint), load_model(checkpoint).to(device)
        seq_len = model.config.max_position_embeddings
        windows = loss_windows(load_split(dataset, manifest, "heldout"), seq_len, None, LossMask(*load_masked(dataset, "heldout")))
        loss = heldout_loss(model, windows, device, device.type == "cuda")
        end, reply_tokens = tokenizer.convert_tokens_to_ids(END_OF_TURN), min(REPLY_TOKENS, seq_len // 2)
        ids = [[tokenizer.bos_token_id] + encode(tokenizer, chat_prompt(tokenizer, [{"role": "user", "content": p}]))
               for p in prompts]
        ids = [i[-(seq_len - reply_tokens):] for i in ids]
        new = continuations(model, ids, reply_tokens, TEMPERATURE, TOP_K, end, seed)
        texts = [tokenizer.decode([t for t in n if t != end], skip_special_tokens=True) for n in new]
        raw = [tokenizer.decode(n, skip_special_tokens=False) for n in new]
        records = sample_records(prompts, langs, texts, raw, lambda text: len(tokenizer.encode(text, add_special_tokens=False)))
        write_jsonl(out / "initiation" / "replies" / f"{arm}-s{seed}.jsonl", records)
        rows.append({"arm": arm, "seed": seed, "run": run.name, "dialogue_loss": loss,
                     "dialogue_targets": int(sum(int((t != IGNORE_INDEX).sum()) for _, t in windows)),
                     "replies": len(records), "ended": sum(end in n for n in new), "probes": probe_counts(records)})
        print(f"initiation_eval: {arm} seed {seed}: held-out assistant-turn loss {loss:.4f}, {rows[-1]['ended']}/{len(records)} replies ended")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    write_json(out / "initiation" / "initiation_eval.json", {"dataset": str(dataset), "heldout_conversations": len(prompts),
                                                              "reply_tokens": REPLY_TOKENS, "temperature": TEMPERATURE,
                                                              "top_k": TOP_K, "models": rows})
    print(f"initiation_eval: {len(rows)} models -> {out / 'initiation' / 'initiation_eval.json'}")


if __name__ == "__main__":
    main()
