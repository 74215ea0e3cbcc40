"""The `ltm` command line: one subcommand per pipeline stage, and `run` for all of them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ltm import __version__

# Nothing is ever fetched from a model hub at run time; loading stays local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def _tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--tag expects KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


def _memory_dir() -> Path:
    """Where `ltm serve` keeps scene memory unless told: the user's data folder (XDG), not the model
    folder, which `ltm export` replaces whole."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ltm" / "memory"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltm",
        description="ltm: train small language models that think in scenes. "
        "Pipeline: ingest -> scenes -> build -> train [-> initiate] -> eval -> report; `ltm run CONFIG` does all of it; "
        "`ltm export` hands the model to the Hugging Face ecosystem.",
    )
    parser.add_argument("--version", action="version", version=f"ltm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="read text files and folders into documents (DOCS.jsonl)",
                       description="Read text, Markdown, HTML, PDF, FB2, EPUB and chat exports (ChatGPT, Claude, Nexus notes, JSONL) "
                       "from files, folders (recursively) and .zip archives into one JSON line per document. "
                       "A metadata.yaml beside the files adds author, title and tags such as phase. "
                       "Files that cannot be read are reported and listed in DOCS.errors.jsonl; the rest goes on.")
    p.add_argument("paths", nargs="+", type=Path, help="files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, help="output DOCS.jsonl")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every document (repeatable)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any file could not be read")

    p = sub.add_parser("scenes", help="cut documents into annotated scenes (SCENES.jsonl); also `scenes validate`, `scenes schema`",
                       description="Segment each document into scenes (chat turns; prose paragraphs grouped where the topic "
                       "holds, TextTiling-style), annotate roles, tension, questions, loop steps, vector and back-references "
                       "(heuristic, or an OpenAI-compatible LLM), and link each scene to related earlier ones. "
                       "`ltm scenes validate SCENES.jsonl [--docs DOCS.jsonl]` checks a file; `ltm scenes schema` prints the JSON Schema.")
    p.add_argument("docs", type=Path, help="DOCS.jsonl from `ltm ingest`")
    p.add_argument("-o", "--out", type=Path, required=True, help="output SCENES.jsonl")
    p.add_argument("-c", "--config", type=Path, help="config YAML whose `scenes` section sets lengths, annotator, linking")
    p.add_argument("--annotator", choices=["heuristic", "llm"], help="override the config's annotator")
    p.add_argument("--views", type=Path, metavar="DIR", help="also write one YAML reading view per document into DIR")

    p = sub.add_parser("scenes-validate", help=argparse.SUPPRESS,
                       description="Check SCENES.jsonl against the scene format; with --docs, also that each span indexes its "
                       "document's text. Prints one line per violation (file:line: field: problem); exit 1 if any.")
    p.add_argument("scenes", type=Path)
    p.add_argument("--docs", type=Path, help="DOCS.jsonl the scenes were made from")

    sub.add_parser("scenes-schema", help=argparse.SUPPRESS, description="Print the JSON Schema of a scene (SCENES.jsonl lines).")

    p = sub.add_parser("build", help="tokenizer, curriculum, repetition regime -> token shards + manifest",
                       description="Hold out documents, train (or reuse) a byte-level BPE tokenizer, order the texts "
                       "(curriculum), schedule repetition under one token budget (unique, corpus_epochs, doc_consecutive, "
                       "chunk_epochs, spiral with lenses) and write token shards, provenance and manifest.json into "
                       "DATASET_DIR. See docs/build.md.")
    p.add_argument("config", type=Path, help="config YAML (its `build` section and `seed`)")
    p.add_argument("--scenes", type=Path, required=True, help="SCENES.jsonl from `ltm scenes`")
    p.add_argument("-o", "--out", type=Path, required=True, help="output DATASET_DIR")

    p = sub.add_parser("train", help="train a model on a built dataset (torchrun for several GPUs)",
                       description="Train the model described in the config's `model` section on DATASET_DIR with the "
                       "`train` section (bf16, torch.compile, AdamW or Muon, cosine or WSD, accumulation, checkpoints); "
                       "writes metrics.jsonl, tensorboard/, checkpoints/ and checkpoint/ (the final model) into OUT_DIR; an OUT_DIR that "
                       "holds an earlier run needs --resume or --overwrite. "
                       "Under `torchrun --nproc_per_node N` it trains with DDP or FSDP2.")
    p.add_argument("config", type=Path, help="config YAML (its `model`, `train` sections and `seed`)")
    p.add_argument("--data", type=Path, required=True, help="DATASET_DIR from `ltm build`")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder for metrics and checkpoint")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT (same config and data)")
    again.add_argument("--overwrite", action="store_true", help="delete an earlier run in OUT (checkpoints, metrics) and start again")

    p = sub.add_parser("initiate", help="the initiation stage: LoRA (merged), full or none on dialogue data after pretraining",
                       description="Run the final stage of training on a separate dataset of dialogue scenes, as the config's "
                       "`initiation` section says: `lora` trains LoRA adapters on the frozen pretrained model and merges them into "
                       "the weights, `full` trains every parameter, `none` copies the model unchanged (the comparisons). "
                       "DATASET_DIR must be built with the checkpoint's tokenizer (build.tokenizer: the pretraining DATASET/tokenizer). "
                       "Writes metrics.jsonl and checkpoint/ (a plain model, loads and exports like a trained one) into OUT_DIR, "
                       "and under LoRA the adapter alone into OUT_DIR/adapter. See docs/training.md.")
    p.add_argument("config", type=Path, help="config YAML (its `initiation` and `train` sections and `seed`)")
    p.add_argument("--checkpoint", type=Path, required=True, help="the pretrained model, e.g. TRAIN_OUT/checkpoint")
    p.add_argument("--data", type=Path, required=True, help="DATASET_DIR of dialogue scenes from `ltm build` (unused when mode is none)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")

    p = sub.add_parser("tune", help="LoRA-tune (or fully tune) a Hugging Face model you have on disk (Qwen, Saiga, ...)",
                       description="Tune any local Hugging Face causal-LM folder (config.json, weights, tokenizer) on your texts with "
                       "its own tokenizer, nothing downloaded: LoRA on the frozen model, merged into the weights (or every parameter "
                       "with initiation.mode: full in the config). One text in ten is held out to measure the loss. The context is "
                       "min(the model's, model.max_seq_len); steps, learning rate, batch and LoRA settings come from the config's "
                       "`initiation` section. Writes OUT_DIR/checkpoint (loads with AutoModelForCausalLM, in the model's dtype), "
                       "OUT_DIR/adapter and metrics.jsonl. See docs/training.md.")
    p.add_argument("model", type=Path, help="Hugging Face model folder")
    p.add_argument("--texts", type=Path, nargs="+", required=True, metavar="FILE",
                   help="DOCS.jsonl or SCENES.jsonl (each line's `text`), or plain .txt/.md files (each one text)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("-c", "--config", type=Path, help="config YAML (its `initiation`, `train`, `model.max_seq_len`); default: LoRA with defaults")

    p = sub.add_parser("export", help="write a Hugging Face folder (a plain Llama when every extra is off)",
                       description="Export a run's model (RUN/initiation/checkpoint if the run has one, else RUN/train/checkpoint) or a checkpoint folder to DIR: "
                       "safetensors weights, config, tokenizer with chat template, generation config. With every scene-aware "
                       "extra off the folder declares LlamaForCausalLM and loads with plain transformers; with extras on it "
                       "declares LtmForCausalLM and loads after `import ltm.model`. `--format gguf` writes one GGUF file "
                       "for llama.cpp instead (plain-Llama models).")
    p.add_argument("source", type=Path, help="run folder or checkpoint folder")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (with --format gguf: the output .gguf file)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder, when the checkpoint has none")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf",
                   help="hf: a Hugging Face folder; gguf: one GGUF file for llama.cpp and Ollama (plain-Llama models; pip install 'ltm[gguf]')")
    p.add_argument("--gguf-dtype", choices=["f16", "f32"], default="f16", help="GGUF weights: f16 (norms stay f32) or f32")

    p = sub.add_parser("serve", help="serve an exported model through an OpenAI-compatible HTTP API",
                       description="Serve MODEL_DIR (from `ltm export`) with /v1/models, /v1/completions, /v1/chat/completions "
                       "(streaming as server-sent events), /v1/scenes (structured scene queries), /v1/memory (scene memory), "
                       "/health and /metrics. Binds 127.0.0.1 unless told otherwise; any other address needs an API key.")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-env", help="environment variable holding the API key clients must send")
    p.add_argument("--memory-dir", type=Path, default=_memory_dir(),
                   help="scene memory: one folder per namespace, kept across restarts (default: %(default)s)")

    p = sub.add_parser("chat", help="talk to an exported model in the terminal, answers streamed",
                       description="A terminal conversation with MODEL_DIR (from `ltm export`): each line is a user turn, the answer "
                       "streams as it is generated. /reset forgets the conversation, /exit or end of input leaves.")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--system", help="a system message opening the conversation")

    p = sub.add_parser("eval", help="measure a trained run (held-out bits per byte and baselines)",
                       description="Evaluate RUN (a run folder from `ltm run`): held-out bits per byte of the trained model, "
                       "of the same model untrained, and of a unigram model; samples from the config's prompts. The model is "
                       "RUN/initiation/checkpoint if the run has one, else RUN/train/checkpoint.")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("-o", "--out", type=Path, help="output eval.json (default RUN/eval.json)")
    p.add_argument("--control", type=Path, help="another run folder: its model is the memorization control (default: untrained)")

    p = sub.add_parser("report", help="write an HTML report for one or more runs",
                       description="Write one HTML page comparing the given run folders: metrics table, loss curves, samples.")
    p.add_argument("runs", nargs="+", type=Path, help="run folders with eval.json")
    p.add_argument("-o", "--out", type=Path, required=True, help="output report.html")

    p = sub.add_parser("experiment", help="run a grid of runs (axes x seeds) at one token budget, recorded in SQLite",
                       description="Run every cell of EXP.yaml (a base config, axes of overrides, seeds; see docs/experiments.md), "
                       "each in its own process, one per GPU when there are several. Finished cells are skipped and "
                       "interrupted ones resumed. Writes report.md and report.html (mean ± 95% CI over seeds) in the workspace.")
    p.add_argument("spec", type=Path, help="experiment YAML")
    p.add_argument("--workers", type=int, help="cells at a time (default: one per GPU, else 1)")

    p = sub.add_parser("runs", help="list or compare the runs recorded in an experiment workspace",
                       description="`ltm runs list` shows every recorded run; `ltm runs compare` prints the study table "
                       "(mean ± 95% CI over seeds per cell) from the SQLite registry alone.")
    p.add_argument("action", choices=["list", "compare"])
    p.add_argument("--workspace", type=Path, required=True, help="the experiment's workspace (holds ltm.sqlite)")
    p.add_argument("--experiment", help="only this experiment")
    p.add_argument("--baseline", help="compare: also print each cell minus this cell, paired by seed (e.g. regime=unique)")

    p = sub.add_parser("run", help="run every stage from one YAML config",
                       description="Run ingest, scenes, build, train, eval and report in order into a new run folder "
                       "under the config's out_dir (or --run-dir). The folder's path is printed at the end. When "
                       "initiation.mode is lora or full, initiation.paths are ingested, cut into scenes and built with the "
                       "pretraining tokenizer into RUN/dataset-initiation, the initiation stage runs after training into "
                       "RUN/initiation, and eval and export use its model.")
    p.add_argument("config", type=Path, help="config YAML, e.g. examples/quickstart.yaml")
    p.add_argument("--run-dir", type=Path, help="use this run folder instead of a new timestamped one")
    p.add_argument("--resume", action="store_true", help="keep finished stages in --run-dir and resume training from its checkpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `ltm scenes validate|schema` are spelled as words after `scenes`; argparse sees one command.
    if len(argv) >= 2 and argv[0] == "scenes" and argv[1] in ("validate", "schema"):
        argv = [f"scenes-{argv[1]}", *argv[2:]]
    args = _parser().parse_args(argv)
    # Imported late so `ltm --help` answers at once, without loading torch.
    from transformers.utils import logging as hf_logging

    from ltm import stages
    from ltm.dataset import DatasetError
    from ltm.config import ConfigError, RunConfig, load_config
    from ltm.eval.evaluate import EvalError
    from ltm.log import console, error
    from ltm.model.export import ExportError
    from ltm.train import TrainError

    hf_logging.disable_progress_bar()
    try:
        if args.command == "ingest":
            failed = stages.ingest(args.paths, args.out, _tags(args.tag))
            if args.strict and failed:
                return 1
        elif args.command == "scenes":
            config = load_config(args.config) if args.config else RunConfig()
            if args.annotator:
                config.scenes.annotator = args.annotator
            stages.scenes(args.docs, args.out, config, args.views)
        elif args.command == "scenes-validate":
            from ltm.scenes.validate import validate_scenes

            problems = validate_scenes(args.scenes, args.docs)
            for problem in problems:
                print(problem)
            console.print(f"{args.scenes}: {'valid' if not problems else f'{len(problems)} problems'}")
            return 1 if problems else 0
        elif args.command == "scenes-schema":
            import json

            from ltm.formats import json_schema

            print(json.dumps(json_schema("scene"), indent=2, ensure_ascii=False))
        elif args.command == "build":
            stages.build(load_config(args.config), args.scenes, args.out)
        elif args.command == "train":
            from ltm.train import train

            train(load_config(args.config), args.data, args.out, resume=args.resume, overwrite=args.overwrite)
        elif args.command == "initiate":
            from ltm.train.initiation import initiate

            initiate(load_config(args.config), args.checkpoint, args.data, args.out)
        elif args.command == "tune":
            from ltm.train.initiation import read_texts, tune_hf

            config = load_config(args.config) if args.config else RunConfig(initiation={"mode": "lora"})
            tune_hf(args.model, read_texts(args.texts), config, args.out)
        elif args.command == "export":
            stages.export_model(args.source, args.out, args.tokenizer, args.format, args.gguf_dtype)
        elif args.command == "serve":
            import uvicorn

            from ltm.serve.app import check_binding, create_app
            from ltm.serve.engine import Engine
            from ltm.serve.memory import MemoryStore

            api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
            if args.api_key_env and not api_key:  # a typo in the name would otherwise serve with no key at all
                raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty; "
                                 "export it with the key clients must send, or leave --api-key-env out")
            check_binding(args.host, api_key)
            engine = Engine(args.model_dir)
            try:
                uvicorn.run(create_app(engine, api_key, MemoryStore(args.memory_dir)), host=args.host, port=args.port, log_level="info")
            finally:
                engine.close()
        elif args.command == "chat":
            from ltm.serve.chat import chat

            return chat(args.model_dir, args.max_tokens, args.temperature, args.top_p, args.system)
        elif args.command == "eval":
            stages.evaluate_run(args.run, args.out, args.control)
        elif args.command == "report":
            stages.report(args.runs, args.out)
        elif args.command == "experiment":
            from ltm.experiment.runner import run_experiment

            run_experiment(args.spec, args.workers)
        elif args.command == "runs":
            from ltm.experiment.registry import Registry
            from ltm.experiment.report import paired_table, study_table

            path = args.workspace / "ltm.sqlite"
            if not path.exists():
                raise FileNotFoundError(f"{path}: no registry; run `ltm experiment` first")
            registry = Registry(path)
            if args.action == "list":
                for row in registry.runs(args.experiment):
                    print(f"{row['experiment']}\t{row['cell']}\tseed {row['seed']}\t{row['status']}\t{row['config_hash']}\t{row['run_dir']}")
            else:
                for name in sorted({row["experiment"] for row in registry.runs(args.experiment)}):
                    print(f"## {name}\n\n{study_table(registry, name)}\n")
                    if args.baseline:
                        print(f"Paired with {args.baseline}, seed by seed:\n\n{paired_table(registry, name, args.baseline)}\n")
        elif args.command == "run":
            run_dir = stages.run(args.config, args.run_dir, resume=args.resume)
            console.print(f"\nrun folder: {run_dir}\nreport:     {run_dir / stages.REPORT}\neval:       {run_dir / stages.EVAL}")
            print(run_dir)
    except (ConfigError, DatasetError, TrainError, EvalError, ExportError, stages.StageError, FileNotFoundError,
            argparse.ArgumentTypeError, ValueError) as exc:
        error(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
