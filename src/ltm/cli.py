"""The `ltm` command line: one subcommand per pipeline stage, and `run` for all of them.

COMMANDS is the whole interface: each entry names a subcommand, its help, its arguments and the
ltm.stages function it calls. Nothing heavy is imported until a command runs: `ltm --help` answers
at once, and `ltm ingest` loads neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ltm import __version__

# Nothing is ever fetched from a model hub at run time; loading stays local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
# Off a terminal ltm's progress is plain lines (ltm.log); the Hugging Face libraries' tqdm bars
# ("Loading weights", "Writing model shards") would put carriage-return debris in the log.
if not sys.stderr.isatty():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--tag expects KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


def _at_least_one(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _memory_dir() -> Path:
    """Where `ltm serve` keeps scene memory unless told: the user's data folder (XDG), not the model
    folder, which `ltm export` replaces whole."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ltm" / "memory"


def _config(args: argparse.Namespace, attribute: str = "config"):
    """The config a command names (`--set` overrides applied), or None when it names none."""
    from ltm.config import load_config

    path = getattr(args, attribute)
    if path is None and args.set:
        raise ValueError(f"--set {args.set[0]}: there is no config to change; name one with -c")
    return load_config(path, args.set) if path else None


# --- what each command does -----------------------------------------------------------------------


def _ingest(args) -> int:
    from ltm import stages

    failed = stages.ingest(args.paths, args.out, _tags(args.tag))
    return 1 if args.strict and failed else 0


def _scenes(args) -> int:
    from ltm import stages
    from ltm.config import RunConfig

    config = _config(args) or RunConfig()
    if args.annotator:
        config.scenes.annotator = args.annotator
    stages.scenes(args.docs, args.out, config, args.views)
    return 0


def _scenes_validate(args) -> int:
    from ltm import stages
    from ltm.log import console

    problems = stages.validate_scenes(args.scenes, args.docs)
    for problem in problems:
        print(problem)
    console.print(f"{args.scenes}: {'valid' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


def _scenes_schema(args) -> int:
    from ltm import stages

    print(json.dumps(stages.scene_schema(), indent=2, ensure_ascii=False))
    return 0


def _pipeline(args) -> int:
    from ltm.config import RunConfig

    try:
        from ltm.scale import recipes
    except ImportError as exc:
        raise ValueError(f"ltm pipeline runs on datatrove: pip install 'ltm[scale]' ({exc})") from None
    config = _config(args) or RunConfig()
    cluster = recipes.Cluster(partition=args.partition, time=args.time, cpus_per_task=args.cpus_per_task, venv_path=args.venv)
    scenes = recipes.run(args.inputs, args.out, args.tasks, args.workers, config.scenes, args.dedup, args.executor, cluster,
                         glob=args.glob, tags=_tags(args.tag), seed=config.seed)
    print(scenes)
    return 0


def _experiment(args) -> int:
    from ltm import stages

    if args.submit is None:
        stages.experiment(args.spec, args.parallel, False if args.no_mps else None)
        return 0
    from ltm.experiment.submit import SubmitOptions, submit_experiment

    submit_experiment(args.spec, args.submit, SubmitOptions(partition=args.partition, timeout_min=args.timeout_min,
                                                            gpus_per_job=args.gpus_per_run, cpus_per_job=args.cpus_per_run,
                                                            parallel=args.parallel, registry=args.registry))
    return 0


def _run(args) -> int:
    from ltm import stages
    from ltm.log import console

    run_dir = stages.run(args.config, args.run_dir, resume=args.resume, overrides=args.set, shared=args.shared)
    console.print(f"\nrun folder: {run_dir}\nreport:     {run_dir / stages.REPORT}\neval:       {run_dir / stages.EVAL}")
    print(run_dir)
    return 0


def _call(function: str, *fields: str, config: str | None = None) -> Callable[[argparse.Namespace], int]:
    """A command that passes its config (when `config` names the argument) and `fields` to stages.FUNCTION."""
    def handler(args) -> int:
        from ltm import stages

        values = ([_config(args, config)] if config else []) + [getattr(args, field) for field in fields]
        result = getattr(stages, function)(*values)
        if isinstance(result, str):
            print(result)
        return result if isinstance(result, int) else 0

    return handler


# --- the commands -----------------------------------------------------------------------------------


def arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    return flags, options


def out(what: str) -> tuple:
    return arg("-o", "--out", type=Path, required=True, help=what)


def configured(what: str, *arguments: tuple) -> tuple:
    """A config file, `--set` changes to it, then the command's own arguments."""
    return (arg("config", type=Path, help=f"config YAML ({what})"), SET, *arguments)


SET = arg("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
          help="change one config field, e.g. --set train.lr=1e-3 --set model.n_layers=8 (repeatable; validated like the file)")


@dataclass(frozen=True)
class Command:
    name: str
    help: str | None  # None: not listed (spelled `ltm scenes validate` / `ltm scenes schema`)
    description: str
    arguments: tuple
    handler: Callable[[argparse.Namespace], int]


COMMANDS = (
    Command("ingest", "read text files and folders into documents (DOCS.jsonl)",
            "Read text, Markdown, HTML, PDF, FB2, EPUB and chat exports (ChatGPT, Claude, Nexus notes, JSONL) from files, folders "
            "(recursively) and .zip archives into one JSON line per document; chat exports are recognised by content whatever "
            "the file is called. A metadata.yaml or metadata.csv (file,title,author,year,tags) beside the files adds author, title "
            "and tags such as phase; see docs/formats.md for mapping another table (e.g. info.csv). Files that cannot "
            "be read are reported and listed in DOCS.errors.jsonl; the rest goes on.",
            (arg("paths", nargs="+", type=Path, help="files or folders"), out("output DOCS.jsonl"),
             arg("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every document (repeatable)"),
             arg("--strict", action="store_true", help="exit 1 when any file could not be read")),
            _ingest),
    Command("facts", "make a synthetic fact set: biographies of made-up people (DOCS.jsonl) and questions (QA.jsonl)",
            "Make the config's `facts` section into documents: facts.people made-up people per language (English, Russian), each "
            "with a birth date, city, university, profession and teacher, described by facts.renderings biographies drawn from "
            "several templates per attribute (sentences shuffled with facts.permute), as ordinary ltm documents; and one question "
            "with its answer and three distractors per person and attribute into QA.jsonl, for `eval.qa`. A share of the people "
            "(facts.heldout_share) is tagged split: heldout and never trained on. `ltm run` adds the fact set to the ingested "
            "documents by itself; by hand, `cat` the two DOCS.jsonl files. See docs/eval.md.",
            configured("its `facts` section", out("output DOCS.jsonl"), arg("--qa", type=Path, required=True, help="output QA.jsonl")),
            _call("facts", "out", "qa", config="config")),
    Command("scenes", "cut documents into annotated scenes (SCENES.jsonl); also `scenes validate`, `scenes schema`",
            "Segment each document into scenes (headings, letters, a dialogue's turns and dialogue kept as the text has them; long "
            "stretches cut where the topic shifts, never inside a sentence), annotate roles, tension, questions, loop steps, vector "
            "and back-references (heuristic, or an OpenAI-compatible LLM), and link each scene to related earlier ones of its "
            "document. `ltm scenes validate SCENES.jsonl [--docs DOCS.jsonl]` checks a file; `ltm scenes schema` prints the JSON Schema.",
            (arg("docs", type=Path, help="DOCS.jsonl from `ltm ingest`"), out("output SCENES.jsonl"),
             arg("-c", "--config", type=Path, help="config YAML whose `scenes` section sets lengths, annotator, linking"), SET,
             arg("--annotator", choices=["heuristic", "llm"], help="override the config's annotator"),
             arg("--views", type=Path, metavar="DIR", help="also write one YAML reading view per document into DIR")),
            _scenes),
    Command("scenes-validate", None,
            "Check SCENES.jsonl against the scene format; with --docs, also that each span indexes its document's text. "
            "Prints one line per violation (file:line: field: problem); exit 1 if any.",
            (arg("scenes", type=Path), arg("--docs", type=Path, help="DOCS.jsonl the scenes were made from")),
            _scenes_validate),
    Command("scenes-schema", None, "Print the JSON Schema of a scene (SCENES.jsonl lines).", (), _scenes_schema),
    Command("pipeline", "ingest + dedup + scenes for corpora past one machine, on datatrove (local, Slurm, Ray)",
            "The ingest and scenes stages as datatrove pipeline steps (extra `scale`): ltm's readers (mojibake repaired, Project "
            "Gutenberg stripped), near-duplicate removal (datatrove's MinHash across tasks, or ltm's within each task), scene "
            "cutting and linking within each document; every stage writes JSONL shards, one per task, under OUT (documents/, "
            "unique/, scenes/); a rerun skips finished tasks. `ltm build` reads OUT/scenes/*.jsonl. Slurm and Ray: docs/scale.md.",
            (arg("inputs", help="folder of files to read (local path, or any fsspec URL datatrove reads)"), out("output folder"),
             arg("-c", "--config", type=Path, help="config YAML whose `scenes` section sets lengths and linking"), SET,
             arg("--tasks", type=int, default=1, help="tasks per stage (shards of the input files, and of every output)"),
             arg("--workers", type=int, default=-1, help="tasks run at once on this machine (local executor; default one per core)"),
             arg("--dedup", choices=["minhash", "task", "none"], default="minhash",
                 help="minhash: datatrove's, across all tasks; task: ltm's within each task; none"),
             arg("--glob", help="only files matching this pattern, e.g. '**/*.txt'"),
             arg("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every document (repeatable)"),
             arg("--executor", choices=["local", "slurm", "ray"], default="local", help="where the tasks run"),
             arg("--partition", default="cpu", help="Slurm partition"), arg("--time", default="12:00:00", help="Slurm time limit per task"),
             arg("--cpus-per-task", type=int, default=1, help="Slurm/Ray CPUs per task"),
             arg("--venv", help="Slurm: virtual environment every job activates")),
            _pipeline),
    Command("build", "tokenizer, curriculum, repetition regime -> token shards + manifest",
            "Hold out documents, train (or reuse) a byte-level BPE tokenizer, order the texts (curriculum), schedule repetition "
            "under one token budget (unique, corpus_epochs, doc_consecutive, chunk_epochs, spiral with lenses) and write token "
            "shards, provenance and manifest.json into DATASET_DIR. See docs/build.md.",
            configured("its `build` section and `seed`", arg("--scenes", type=Path, required=True,
                                                                      help="SCENES.jsonl from `ltm scenes`, or scene shards from `ltm pipeline`: "
                                                                           "their folder or a glob such as 'out/scenes/*.jsonl'"),
                       out("output DATASET_DIR")),
            _call("build", "scenes", "out", config="config")),
    Command("train", "train a model on a built dataset (torchrun for several GPUs)",
            "Train the model of the config's `model` section on DATASET_DIR as its `train` section says (speed: auto picks bf16, "
            "torch.compile, CUDA graphs and FP8 where they pay); metrics.jsonl, checkpoints/ and checkpoint/ (the final model) go "
            "into OUT_DIR, which, holding an earlier run, needs --resume or --overwrite. Under torchrun it trains with DDP or FSDP2.",
            configured("its `model`, `train` sections and `seed`", arg("--data", type=Path, required=True, help="DATASET_DIR from `ltm build`"),
                       out("output folder for metrics and checkpoint"),
                       arg("--resume", action="store_true", help="continue from the last checkpoint in OUT (same config and data)"),
                       arg("--overwrite", action="store_true", help="delete an earlier run in OUT (checkpoints, metrics) and start again")),
            _call("train", "data", "out", "resume", "overwrite", config="config")),
    Command("initiate", "the initiation stage: LoRA (merged), full or none on dialogue data after pretraining",
            "Run the final stage of training on a separate dataset of dialogue scenes, as the config's `initiation` section says: "
            "`lora` trains LoRA adapters on the frozen pretrained model and merges them into the weights, `full` trains every "
            "parameter, `none` copies the model unchanged (the comparisons). DATASET_DIR must be built with the checkpoint's "
            "tokenizer (build.tokenizer: the pretraining DATASET/tokenizer). Writes metrics.jsonl (step 0: the held-out loss "
            "before) and checkpoint/ into OUT_DIR, and under LoRA the adapter alone into OUT_DIR/adapter. See docs/training.md.",
            configured("its `initiation` and `train` sections and `seed`",
                       arg("--checkpoint", type=Path, required=True, help="the pretrained model, e.g. TRAIN_OUT/checkpoint"),
                       arg("--data", type=Path, required=True, help="DATASET_DIR of dialogue scenes from `ltm build` (unused when mode is none)"),
                       out("output folder")),
            _call("initiate", "checkpoint", "data", "out", config="config")),
    Command("tune", "LoRA-tune (or fully tune) a Hugging Face model you have on disk (Qwen, Saiga, ...)",
            "Tune any local Hugging Face causal-LM folder (config.json, weights, tokenizer) on your texts with its own tokenizer, "
            "nothing downloaded: LoRA on the frozen model, merged into the weights (or every parameter with initiation.mode: full "
            "in the config). One text in ten is held out to measure the loss. The context is min(the model's, model.max_seq_len); "
            "steps, learning rate, batch and LoRA settings come from the config's `initiation` section. Writes OUT_DIR/checkpoint "
            "(loads with AutoModelForCausalLM, in the model's dtype), OUT_DIR/adapter and metrics.jsonl. See docs/training.md.",
            (arg("model", type=Path, help="Hugging Face model folder"),
             arg("--texts", type=Path, nargs="+", required=True, metavar="FILE",
                 help="DOCS.jsonl or SCENES.jsonl (each line's `text`), or plain .txt/.md files (each one text)"),
             out("output folder"),
             arg("-c", "--config", type=Path, help="config YAML (its `initiation`, `train`, `model.max_seq_len`); default: LoRA with defaults"),
             SET),
            _call("tune", "model", "texts", "out", config="config")),
    Command("export", "write a Hugging Face folder (a plain Llama when every extra is off), or a GGUF file",
            "Export a run's model (RUN/initiation/checkpoint if the run has one, else RUN/train/checkpoint) or a checkpoint folder "
            "to DIR: safetensors weights, config, tokenizer with chat template, generation config. With every scene-aware extra "
            "off the folder declares LlamaForCausalLM and loads with plain transformers; with extras on it declares "
            "LtmForCausalLM and loads after `import ltm.model`. `--format gguf` writes one GGUF file for llama.cpp instead "
            "(plain-Llama models).",
            (arg("source", type=Path, help="run folder or checkpoint folder"),
             out("output folder (with --format gguf: the output .gguf file)"),
             arg("--tokenizer", type=Path, help="tokenizer folder, when the checkpoint has none"),
             arg("--format", choices=["hf", "gguf"], default="hf",
                 help="hf: a Hugging Face folder; gguf: one GGUF file for llama.cpp and Ollama (plain-Llama models; pip install 'ltm[gguf]')"),
             arg("--gguf-dtype", choices=["f16", "f32"], default="f16", help="GGUF weights: f16 (norms stay f32) or f32")),
            _call("export_model", "source", "out", "tokenizer", "format", "gguf_dtype")),
    Command("serve", "serve an exported model through an OpenAI-compatible HTTP API",
            "Serve MODEL_DIR (from `ltm export`) with /v1/models, /v1/completions, /v1/chat/completions (streaming as server-sent "
            "events), /v1/scenes (structured scene queries), /v1/memory (scene memory), /health and /metrics, and a web page "
            "at /. Binds 127.0.0.1 unless told otherwise; any other address needs an API key.",
            (arg("model_dir", type=Path), arg("--host", default="127.0.0.1"), arg("--port", type=int, default=8000),
             arg("--api-key-env", help="environment variable holding the API key clients must send"),
             arg("--memory-dir", type=Path, default=_memory_dir(),
                 help="scene memory: one folder per namespace, kept across restarts (default: %(default)s)")),
            _call("serve", "model_dir", "host", "port", "api_key_env", "memory_dir")),
    Command("chat", "talk to an exported model in the terminal, answers streamed",
            "A terminal conversation with MODEL_DIR (from `ltm export`): each line is a user turn, the answer streams as it is "
            "generated. /reset forgets the conversation, /exit or end of input leaves.",
            (arg("model_dir", type=Path), arg("--max-tokens", type=int, default=200), arg("--temperature", type=float, default=0.8),
             arg("--top-p", type=float, default=0.95), arg("--system", help="a system message opening the conversation")),
            _call("chat", "model_dir", "max_tokens", "temperature", "top_p", "system")),
    Command("eval", "measure a trained run (held-out bits per byte and baselines)",
            "Evaluate RUN (a run folder from `ltm run`): held-out bits per byte of the trained model, of the same model untrained, "
            "and of a unigram model; memorization; probes; samples from the config's prompts. The model is "
            "RUN/initiation/checkpoint if the run has one, else RUN/train/checkpoint.",
            (arg("run", type=Path, help="run folder"), arg("-o", "--out", type=Path, help="output eval.json (default RUN/eval.json)"),
             arg("--control", type=Path, help="another run folder: its model is the memorization control (default: untrained)")),
            _call("evaluate_run", "run", "out", "control")),
    Command("report", "write an HTML report for one or more runs",
            "Write one HTML page comparing the given run folders: metrics table, loss curves, samples.",
            (arg("runs", nargs="+", type=Path, help="run folders with eval.json"), out("output report.html")),
            _call("report", "runs", "out")),
    Command("experiment", "run a grid of runs (axes x seeds) at one token budget, recorded in SQLite",
            "Run every cell of EXP.yaml (a base config, axes of overrides, seeds; see docs/experiments.md), several at once "
            "on each GPU in worker processes (through a CUDA MPS daemon of their own where possible, so their kernels overlap), with a live view "
            "of cells done, running and failed. A failed cell never stops the others; finished cells are skipped and "
            "interrupted ones resumed. Writes report.md and report.html (mean ± 95% CI over seeds) in the workspace.",
            (arg("spec", type=Path, help="experiment YAML"),
             arg("--parallel", type=_at_least_one, help="cells at once per GPU (default: the file's `parallel`, else as many as free GPU "
                                              "memory holds for the model, at most 12; 1 on CPUs); with --submit, jobs at once"),
             arg("--no-mps", action="store_true", help="never start a CUDA MPS daemon for the workers (the file's `mps: false`)"),
             arg("--submit", choices=["slurm", "local"], help="run each cell as a cluster job through submitit (extra `scale`; "
                                                            "local: the same jobs as local processes); see docs/scale.md"),
             arg("--partition", help="--submit slurm: the partition"),
             arg("--gpus-per-run", type=int, default=1, help="--submit: GPUs per cell's job"),
             arg("--cpus-per-run", type=int, default=8, help="--submit: CPUs per cell's job"),
             arg("--timeout-min", type=int, default=24 * 60, help="--submit: time limit per cell's job, minutes"),
             arg("--registry", type=Path, help="--submit: the SQLite registry, on a local disk (default WORKSPACE/ltm.sqlite; "
                                             "refused on NFS, Lustre, GPFS)")),
            _experiment),
    Command("runs", "list or compare the runs recorded in an experiment workspace",
            "`ltm runs list` shows every recorded run; `ltm runs compare` prints the study table (mean ± 95% CI over seeds per "
            "cell) from the SQLite registry alone.",
            (arg("action", choices=["list", "compare"]), arg("--workspace", type=Path, required=True, help="the experiment's workspace (holds ltm.sqlite)"),
             arg("--experiment", help="only this experiment"),
             arg("--baseline", help="compare: also print each cell minus this cell, paired by seed (e.g. regime=unique)")),
            _call("runs", "workspace", "action", "experiment", "baseline")),
    Command("run", "run every stage from one YAML config",
            "Run ingest, scenes, build, train, eval and report in order into a new run folder under the config's out_dir (or "
            "--run-dir). The folder's path is printed at the end. When initiation.mode is lora or full, initiation.paths are "
            "ingested, cut into scenes and built with the pretraining tokenizer into RUN/dataset-initiation, the initiation stage "
            "runs after training into RUN/initiation, and eval and export use its model.",
            configured("e.g. examples/quickstart.yaml", arg("--run-dir", type=Path, help="use this run folder instead of a new timestamped one"),
                       arg("--resume", action="store_true", help="keep finished stages in --run-dir and resume training from its checkpoint"),
                       arg("--shared", type=Path, help="a cache folder: ingest, scenes and build are made there once for every run "
                                                       "with the same data settings and hard-linked into the run folder")),
            _run),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltm",
        description="ltm: train small language models that think in scenes. "
        "Pipeline: ingest -> scenes -> build -> train [-> initiate] -> eval -> report; `ltm run CONFIG` does all of it; "
        "`ltm export` hands the model to the Hugging Face ecosystem.",
    )
    parser.add_argument("--version", action="version", version=f"ltm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        listed = {"help": command.help} if command.help else {}
        p = sub.add_parser(command.name, description=command.description, **listed)
        for flags, options in command.arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `ltm scenes validate|schema` are spelled as words after `scenes`; argparse sees one command.
    if len(argv) >= 2 and argv[0] == "scenes" and argv[1] in ("validate", "schema"):
        argv = [f"scenes-{argv[1]}", *argv[2:]]
    args = _parser().parse_args(argv)
    from ltm.config import ConfigError
    from ltm.log import error

    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError, argparse.ArgumentTypeError, ValueError) as exc:  # ltm's refusals are ValueErrors
        error(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
