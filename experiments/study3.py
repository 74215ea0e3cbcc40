"""Study 3's data and plumbing (docs/studies/curriculum.md, docs/studies/initiation.md), called by
experiments/study3_device.sh:

    python experiments/study3.py prepare --corpora DIR [--tiny]   # tagged corpus links + the dialogues
    python experiments/study3.py specs --out DIR --corpora DIR [--tiny]  # the experiment files with workspaces under DIR
    python experiments/study3.py seed-bases --out DIR             # initiation runs start from the shuffle arm's model
    python experiments/study3.py checkpoint-wal DIR               # fold every ltm.sqlite's write-ahead log into it
    python experiments/study3.py pack --out DIR --archive FILE    # FILE (.tar.gz): what the reports read

`prepare` links every file that experiments/study3-corpus/metadata.yaml tags with a phase into that
folder (the sidecar then tags them at ingest), and renders the two books set aside for dialogues
(DIALOGUE_SOURCES, never pretraining text) as chats: each run of four consecutive scenes is one
conversation, the user giving a scene and asking what comes next, the assistant answering with
the scene that follows, twice. Every tenth conversation of each book is held out, the same for every
arm and seed. The same conversations are also written as plain text (the scenes one after another,
no request lines) for the arm that continues pretraining instead of an initiation.
`--tiny` keeps two small held-out documents, the smallest training file per phase and language
among those under TINY_FILE_BYTES (Russian only: every English book is larger) and 20
conversations per book, and `specs --tiny` shrinks model, steps and evaluation and runs two seeds,
for a CPU check.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sqlite3
import tarfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "study3-corpus"          # metadata.yaml (in git) + links made by `prepare`
DIALOGUES = HERE / "study3-dialogues"    # chat/ and plain/, made by `prepare`
DIALOGUE_SOURCES = ["ru/dostoevsky/besy.txt", "en/plato_republic.txt"]
SCENES_PER_DIALOGUE = 4                  # user, assistant, user, assistant
HELDOUT_EVERY = 10                       # conversation i is held out when i % 10 == 9
TINY_DIALOGUES = 20
TINY_SEEDS = [1, 2]
TINY_FILE_BYTES = 150_000
# Each run's small files, kept in the archive (the report scripts read them); datasets and
# checkpoints stay in the workspaces.
KEPT = ["config.yaml", "times.json", "eval.json", "eval.samples.jsonl", "train/metrics.jsonl", "initiation/metrics.jsonl"]
REQUESTS = {"en": ["What happens next?", "Go on.", "Continue the scene.", "And then?"],
            "ru": ["Что было дальше?", "Продолжай.", "Продолжи сцену.", "А дальше?"]}
SPECS = ["curriculum-base.yaml", "curriculum.yaml", "initiation.yaml"]
# The CPU check: a model and a run small enough to finish the whole pipeline in minutes.
TINY = {
    "build": {"vocab_size": 600, "budget_tokens": 2048, "heldout": ["bobok-75771a7b", "tolstoy_o_bezumii-1876a95d"]},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 2, "max_seq_len": 64},
    "train": {"steps": 8, "batch_size": 4, "warmup_steps": 2, "eval_every": 4, "eval_batches": 2, "device": "cpu"},
    "initiation": {"steps": 12, "batch_size": 4},  # past the first user turn, which the loss mask covers
    "eval": {"memorization_per_bucket": 2, "sample_tokens": 8, "wikitext_max_tokens": 300, "data_sample_tokens": 2000,
             "device": "cpu", "cloze": {"items": 10}},
}


def phases() -> dict[str, str]:
    """Relative path -> phase, as the sidecar lists them."""
    return {path: tags["phase"] for path, tags in yaml.safe_load((CORPUS / "metadata.yaml").read_text(encoding="utf-8"))["files"].items()}


def heldout_stems(tiny: bool) -> set[str]:
    """The file stems of the fixed held-out documents (build.heldout ids are STEM-SHA8)."""
    base = yaml.safe_load((HERE / "curriculum-base.yaml").read_text(encoding="utf-8"))
    return {doc.rsplit("-", 1)[0] for doc in (TINY if tiny else base)["build"]["heldout"]}


def link_corpus(corpora: Path, tiny: bool) -> int:
    """Link the tagged files into CORPUS (removing earlier links); return how many."""
    for old in sorted(CORPUS.rglob("*"), reverse=True):
        if old.is_symlink():
            old.unlink()
        elif old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    chosen = phases()
    missing = [p for p in chosen if not (corpora / p).is_file()]
    if missing:
        raise SystemExit(f"study3: {len(missing)} tagged file(s) not under {corpora}, e.g. {missing[0]}")
    if tiny:
        keep = {p for p in chosen if Path(p).stem in heldout_stems(tiny)}
        smallest: dict[tuple[str, str], str] = {}
        for path, phase in chosen.items():
            key = (path.split("/")[0], phase)
            small = (corpora / path).stat().st_size < TINY_FILE_BYTES
            if path not in keep and small and (key not in smallest or (corpora / path).stat().st_size < (corpora / smallest[key]).stat().st_size):
                smallest[key] = path
        chosen = {p: chosen[p] for p in keep | set(smallest.values())}
    for path in chosen:
        link = CORPUS / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((corpora / path).resolve())
    return len(chosen)


def make_dialogues(corpora: Path, work: Path, tiny: bool) -> dict[str, int]:
    """The conversations of DIALOGUE_SOURCES under DIALOGUES/chat (a Claude export per split) and
    DIALOGUES/plain (JSON Lines per split), each folder's metadata.yaml tagging the split."""
    from ltm import stages
    from ltm.config import load_config

    work.mkdir(parents=True, exist_ok=True)
    docs, scenes_path = work / "dialogue-sources.jsonl", work / "dialogue-sources.scenes.jsonl"
    stages.ingest([corpora / p for p in DIALOGUE_SOURCES], docs)
    stages.scenes(docs, scenes_path, load_config(HERE / "curriculum-base.yaml"))
    by_doc: dict[str, list[dict]] = {}
    for line in scenes_path.read_text(encoding="utf-8").splitlines():
        scene = json.loads(line)
        by_doc.setdefault(scene["doc_id"], []).append(scene)
    chats: dict[str, list[dict]] = {"train": [], "heldout": []}
    plain: dict[str, list[dict]] = {"train": [], "heldout": []}
    for doc_id, scenes in sorted(by_doc.items()):
        scenes.sort(key=lambda s: s["index"])
        groups = [scenes[i : i + SCENES_PER_DIALOGUE] for i in range(0, len(scenes) - SCENES_PER_DIALOGUE + 1, SCENES_PER_DIALOGUE)]
        for n, group in enumerate(groups[:TINY_DIALOGUES] if tiny else groups):
            split = "heldout" if n % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
            lang = group[0]["lang"] if group[0]["lang"] in REQUESTS else "en"
            name = f"{doc_id}-{n:04d}"
            messages = []
            for turn, scene in enumerate(group):
                text = scene["text"].strip()
                if turn % 2 == 0:
                    text += "\n\n" + REQUESTS[lang][(n + turn // 2) % len(REQUESTS[lang])]
                messages.append({"sender": "human" if turn % 2 == 0 else "assistant", "text": text})
            chats[split].append({"uuid": name, "name": name, "chat_messages": messages})
            plain[split].append({"id": name, "title": name, "lang": group[0]["lang"],
                                 "text": "\n\n".join(s["text"].strip() for s in group)})
    for form, suffix, write in (("chat", "json", lambda rows: json.dumps(rows, ensure_ascii=False)),
                                ("plain", "jsonl", lambda rows: "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")):
        folder = DIALOGUES / form
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "heldout"):
            rows = chats[split] if form == "chat" else plain[split]
            (folder / f"dialogues-{split}.{suffix}").write_text(write(rows), encoding="utf-8")
        (folder / "metadata.yaml").write_text(yaml.safe_dump(
            {"files": {f"dialogues-{split}.{suffix}": {"split": split} for split in ("train", "heldout")}}), encoding="utf-8")
    return {split: len(rows) for split, rows in chats.items()}


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_specs(out: Path, corpora: Path, tiny: bool) -> None:
    """OUT/specs/*.yaml: the study's files with every path absolute and each workspace under OUT
    (with --tiny, the TINY overrides in the base and in every cell). The WikiText-2 file is the
    config's, else the one under CORPORA (a checkout whose ../shared/corpora is elsewhere)."""
    folder = out / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((HERE / "curriculum-base.yaml").read_text(encoding="utf-8"))
    base["ingest"]["paths"] = [str((HERE / p).resolve()) for p in base["ingest"]["paths"]]
    wikitext = (HERE / base["eval"]["wikitext"]).resolve()
    base["eval"]["wikitext"] = str(wikitext if wikitext.exists() else (corpora / "bench" / wikitext.name).resolve())
    if tiny:
        base = merge(base, TINY)
    (folder / "curriculum-base.yaml").write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False), encoding="utf-8")
    for name in ("curriculum", "initiation"):
        spec = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
        spec["workspace"] = str(out / name)
        if tiny:
            spec["budget_tokens"], spec["seeds"] = TINY["build"]["budget_tokens"], TINY_SEEDS
        for values in spec["axes"].values():
            for override in values.values():
                paths = override.get("initiation", {}).get("paths")
                if paths:
                    override["initiation"]["paths"] = [str((HERE / p).resolve()) for p in paths]
                if tiny and "initiation" in override:
                    override["initiation"] = merge(override["initiation"], TINY["initiation"])
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")


def base_runs(out: Path) -> dict[int, Path]:
    """Seed -> the curriculum's shuffle run folder (the initiation study's pretrained base)."""
    from ltm.experiment.spec import cells, load_spec

    spec, folder = load_spec(out / "specs" / "curriculum.yaml")
    return {c.seed: out / "curriculum" / "runs" / c.run_name for c in cells(spec, folder) if c.values.get("arm") == "shuffle"}


def seed_bases(out: Path) -> int:
    """Hard-link each seed's pretrained run (train/) into every initiation cell of that seed, so
    `ltm run --resume` keeps it and runs only the final stage; share the data stages' cache."""
    from ltm.experiment.spec import cells, load_spec

    bases = {seed: run for seed, run in base_runs(out).items() if (run / "train" / "checkpoint" / "config.json").exists()}
    path = out / "specs" / "initiation.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if set(raw["seeds"]) - set(bases):  # a seed whose base did not finish is left out, not pretrained again
        print(f"study3: seeds {sorted(set(raw['seeds']) - set(bases))} have no pretrained base; the initiation study runs seeds {sorted(bases)}")
        raw["seeds"] = sorted(bases) or raw["seeds"][:0]
        path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    if not bases:
        raise SystemExit("study3: no seed has a pretrained base (the curriculum study's shuffle arm); nothing to initiate")
    spec, folder = load_spec(path)
    shared = out / "initiation" / "shared"
    shared.parent.mkdir(parents=True, exist_ok=True)
    if not shared.exists():
        shared.symlink_to(out / "curriculum" / "shared")
    linked = 0
    for cell in cells(spec, folder):
        source = bases[cell.seed] / "train"
        target = out / "initiation" / "runs" / cell.run_name / "train"
        for path in sorted(source.rglob("*")):
            if path.is_file() and not (target / path.relative_to(source)).exists():
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target / path.relative_to(source))
        linked += 1
    return linked


def checkpoint_wal(root: Path) -> list[Path]:
    """Every ltm.sqlite under ROOT with its write-ahead log folded in (what a copy of the file alone needs)."""
    done = []
    for db in sorted(root.rglob("ltm.sqlite")):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        done.append(db)
    return done


def pack(out: Path, archive: Path, extra: list[Path]) -> Path:
    """ARCHIVE (.tar.gz): the `extra` files (the log), the specs, each workspace's registry, report and logs,
    each run's KEPT files, one dataset manifest per arm (an arm's seeds share its build), and the
    initiation's held-out evaluation and replies; paths relative to OUT."""
    manifests: set[str] = set()
    with tarfile.open(archive.with_suffix(".tmp"), "w:gz") as tar:
        def add(path: Path) -> None:
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(out)))

        for path in extra:
            tar.add(path, arcname=path.name)
        for path in sorted((out / "specs").glob("*.yaml")):
            add(path)
        for name in ("curriculum", "initiation"):
            ws = out / name
            for path in [ws / "ltm.sqlite", ws / "report.md", ws / "initiation_eval.json", *sorted(ws.glob("logs/*.log")),
                         *sorted(ws.glob("replies/*.jsonl"))]:
                add(path)
            for run in sorted(ws.glob("runs/*")):
                for kept in KEPT:
                    add(run / kept)
                arm = run.name.rsplit("-", 2)[0]
                for dataset in ("dataset", "dataset-initiation"):
                    manifest = run / dataset / "manifest.json"
                    if f"{name}/{arm}/{dataset}" not in manifests and manifest.exists():
                        manifests.add(f"{name}/{arm}/{dataset}")
                        data = gzip.compress(manifest.read_bytes())
                        info = tarfile.TarInfo(f"{name}/manifests/{arm}.{dataset}.json.gz")
                        info.size, info.mtime = len(data), int(manifest.stat().st_mtime)
                        tar.addfile(info, io.BytesIO(data))
    os.replace(archive.with_suffix(".tmp"), archive)
    print(f"study3: {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare")
    prepare.add_argument("--corpora", type=Path, required=True, help="the folder holding en/ and ru/")
    prepare.add_argument("--work", type=Path, required=True, help="where the dialogue sources' documents and scenes go")
    prepare.add_argument("--tiny", action="store_true")
    specs = sub.add_parser("specs")
    specs.add_argument("--out", type=Path, required=True)
    specs.add_argument("--corpora", type=Path, required=True)
    specs.add_argument("--tiny", action="store_true")
    sub.add_parser("seed-bases").add_argument("--out", type=Path, required=True)
    sub.add_parser("checkpoint-wal").add_argument("root", type=Path)
    packing = sub.add_parser("pack")
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument("--archive", type=Path, required=True)
    packing.add_argument("--extra", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    if args.command == "prepare":
        print(f"study3: {link_corpus(args.corpora, args.tiny)} tagged files linked into {CORPUS}")
        print(f"study3: conversations {make_dialogues(args.corpora, args.work, args.tiny)} -> {DIALOGUES}")
    elif args.command == "specs":
        write_specs(args.out.resolve(), args.corpora, args.tiny)
    elif args.command == "seed-bases":
        print(f"study3: {seed_bases(args.out.resolve())} initiation runs start from their seed's pretrained base")
    elif args.command == "pack":
        pack(args.out.resolve(), args.archive, args.extra)
    else:
        print(f"study3: write-ahead logs folded into {[str(p) for p in checkpoint_wal(args.root)]}")


if __name__ == "__main__":
    main()
