"""Each pipeline stage as one function over files: the front door of the CLI (ltm.cli maps each
subcommand onto one of these), of `ltm run` and of Python users (docs/python-api.md).

A stage reads the previous stage's files and writes its own atomically, so it can be rerun alone.
Each function imports what its stage needs when it runs: `ltm ingest` and `ltm scenes` load
neither torch nor transformers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ltm.config import BuildConfig, RunConfig, absolute_inputs, dump_config, load_config
from ltm.io import atomic_write, write_json, write_jsonl
from ltm.log import error, info, progress, warn

# Where each stage's output lives inside a run folder (docs/formats.md, "Run folder").
DOCS, SCENES, DATASET, TRAIN, EVAL, REPORT, CONFIG, QA, TIMES = (
    "documents.jsonl", "scenes.jsonl", "dataset", "train", "eval.json", "report.html", "config.yaml", "qa.jsonl", "times.json",
)
# The initiation stage's own documents, scenes and dataset, and its output (docs/training.md).
INITIATION_DOCS, INITIATION_SCENES, INITIATION_DATASET, INITIATION = (
    "documents-initiation.jsonl", "scenes-initiation.jsonl", "dataset-initiation", "initiation",
)


class StageError(ValueError):
    """A stage that cannot go on; the message says what to change."""


class Stopwatch:
    """Seconds per stage (RUN/times.json): `with watch("train"): ...` adds the block's time to "train"."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began


def ingest(paths: list[str | Path], out: Path, tags: dict | None = None) -> int:
    """Ingest into `out`; return how many files failed (duplicates and warnings are not failures)."""
    from ltm.ingest import ingest_paths, write_documents

    with progress(transient=True) as bar:
        task = bar.add_task("ingest", total=None, info="files")
        result = ingest_paths(paths, tags, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    for problem in result.errors:
        {"duplicate": info, "warning": warn}.get(problem.kind, error)(problem.line())
    errors_path = write_documents(result, out)
    info(f"ingest: {len(result.documents)} documents -> {out}" + (f" ({len(result.errors)} problems -> {errors_path})" if result.errors else ""))
    if result.skipped:
        info(f"ingest: {len(result.skipped)} files of other types skipped, e.g. {result.skipped[0]}")
    if not result.documents:
        raise StageError(f"no document could be ingested from {', '.join(map(str, paths))}")
    return sum(1 for e in result.errors if e.kind == "error")


def facts(config: RunConfig, out: Path, qa_out: Path, append: bool = False) -> Path:
    """`ltm facts`: the config's fact set as documents into `out` (after the documents already
    there with `append`) and its QA pairs into `qa_out`; return `qa_out`."""
    from ltm.facts import make_facts
    from ltm.facts.names import FactsError
    from ltm.io import iter_jsonl

    if config.facts.people == 0:
        raise StageError("facts.people is 0: set how many people per language the fact set has, e.g. --set facts.people=20")
    try:
        made = make_facts(config.facts)
    except FactsError as exc:
        raise StageError(str(exc)) from None
    earlier = [record for _, record, problem in iter_jsonl(out) if problem is None] if append and out.exists() else []
    write_jsonl(out, [*earlier, *made.documents])
    write_jsonl(qa_out, made.qa)
    heldout = sum(p.split == "heldout" for p in made.people)
    info(f"facts: {len(made.people)} people ({heldout} held out), {len(made.documents)} documents -> {out}"
         + (f" (after {len(earlier)} others)" if earlier else "") + f"; {len(made.qa)} QA pairs -> {qa_out}")
    return qa_out


def scenes(docs_path: Path, out: Path, config: RunConfig, views: Path | None = None) -> int:
    from ltm.scenes import load_documents, make_scenes
    from ltm.scenes.views import write_views

    problems: list[str] = []
    documents = list(load_documents(docs_path, problems))
    scenes_config = config.scenes.model_copy(deep=True)
    scenes_config.llm.cache_dir = str(config.resolve(scenes_config.llm.cache_dir))
    with progress(transient=True) as bar:
        task = bar.add_task("scenes", total=len(documents), info="")
        llm_task = bar.add_task("LLM annotation", total=None, visible=False, info=scenes_config.llm.model)
        link_task = bar.add_task("scene linking", total=None, visible=False, info=scenes_config.embedder)

        def shown(task: int):
            return lambda done, total: bar.update(task, completed=done, total=total, visible=True)

        found = make_scenes(documents, scenes_config, problems, config.build_seed, on_document=lambda d: bar.advance(task),
                            on_llm_progress=shown(llm_task), on_link_progress=shown(link_task))
    for problem in problems:
        error(problem)
    write_jsonl(out, found)
    info(f"scenes: {len(found)} scenes from {len(documents)} documents ({config.scenes.annotator} annotator) -> {out}")
    if views is not None:
        info(f"scenes: {write_views(found, views)} reading views (YAML, one per document) -> {views}")
    if not found:
        raise StageError(f"{docs_path}: no scenes could be made")
    return len(found)


def validate_scenes(scenes_path: Path, docs_path: Path | None = None) -> list[str]:
    """`ltm scenes validate`: one message per violation in SCENES.jsonl (with the documents, spans too)."""
    from ltm.scenes.validate import validate_scenes as validate

    return validate(scenes_path, docs_path)


def scene_schema() -> dict:
    """The JSON Schema of a SCENES.jsonl line."""
    from ltm.formats import json_schema

    return json_schema("scene")


def build(config: RunConfig, scenes_path: Path, out_dir: Path) -> Path:
    from ltm.dataset import SceneFileError, SceneTable, build_dataset

    try:
        table = SceneTable.from_jsonl(scenes_path)
    except (SceneFileError, FileNotFoundError) as exc:
        raise StageError(str(exc)) from None
    build_config = config.build.model_copy(deep=True)
    build_config.llm.cache_dir = str(config.resolve(build_config.llm.cache_dir))
    manifest = build_dataset(table, build_config, config.build_seed, out_dir, context=config.model.max_seq_len)
    info(f"build: {manifest.regime}, curriculum {manifest.curriculum}, vocabulary {manifest.vocab_size}, "
         f"{manifest.split_tokens('train'):,} train tokens ({manifest.stats['train']['data_tokens']:,} of text available) -> {out_dir}")
    return out_dir


def train(config: RunConfig, dataset_dir: Path, out_dir: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """`ltm train`: pretrain on DATASET_DIR into OUT_DIR; return OUT_DIR/checkpoint."""
    from ltm.train import train as pretrain

    return pretrain(config, dataset_dir, out_dir, resume=resume, overwrite=overwrite)


def initiate(config: RunConfig, checkpoint: Path, dataset_dir: Path, out_dir: Path) -> Path:
    """`ltm initiate`: the initiation stage on a pretrained checkpoint; return OUT_DIR/checkpoint."""
    from ltm.train.initiation import initiate as run_initiation

    return run_initiation(config, checkpoint, dataset_dir, out_dir)


def tune(config: RunConfig | None, model_dir: Path, texts: list[Path], out_dir: Path) -> Path:
    """`ltm tune`: LoRA (or full) tuning of a Hugging Face model on disk; default config: LoRA with defaults."""
    from ltm.train.initiation import read_texts, tune_hf

    return tune_hf(model_dir, read_texts(texts), config or RunConfig(initiation={"mode": "lora"}), out_dir)


def initiation(config: RunConfig, run_dir: Path) -> Path:
    """`ltm run`'s initiation stage: initiation.paths -> documents, scenes, a dataset with the
    pretraining tokenizer (every token once) -> RUN/initiation/checkpoint."""
    ingest(config.initiation.paths, run_dir / INITIATION_DOCS)
    scenes(run_dir / INITIATION_DOCS, run_dir / INITIATION_SCENES, config)
    # The held-out share, the shard format and the dialogue form carry over: no curriculum, lenses or budget of the pretraining build.
    b = config.build
    dialogue = config.model_copy(update={"build": BuildConfig(
        tokenizer=str(run_dir / DATASET / "tokenizer"), heldout_docs=b.heldout_docs, dtype=b.dtype, shard_tokens=b.shard_tokens,
        workers=b.workers, dialogue=b.dialogue, system_prompt=b.system_prompt, learn_user_turns=b.learn_user_turns)})
    build(dialogue, run_dir / INITIATION_SCENES, run_dir / INITIATION_DATASET)
    return initiate(config, run_dir / TRAIN / "checkpoint", run_dir / INITIATION_DATASET, run_dir / INITIATION)


def final_checkpoint(run_dir: Path) -> Path:
    """The run's model: the initiated one when the run's config has an initiation stage, else the
    pretrained one (an initiation folder left by an earlier config of the same folder is not it)."""
    initiated = run_dir / INITIATION / "checkpoint"
    config = run_dir / CONFIG
    initiating = load_config(config).initiation.mode != "none" if config.exists() else True
    return initiated if initiating and initiated.is_dir() else run_dir / TRAIN / "checkpoint"


def evaluate_run(run_dir: Path, out: Path | None = None, control: Path | None = None) -> Path:
    """Evaluate RUN's final model; the memorization control is `control` (a run folder), else the
    config's eval.control, else the untrained network."""
    config = load_config(run_dir / CONFIG)
    checkpoint = final_checkpoint(run_dir)
    if not checkpoint.exists():
        raise StageError(f"{run_dir}: no trained checkpoint at {checkpoint}; run `ltm train` first")
    if not (run_dir / DATASET / "manifest.json").exists():
        raise StageError(f"{run_dir}: no dataset manifest at {run_dir / DATASET / 'manifest.json'}; run `ltm build` first")
    from ltm.eval.evaluate import evaluate

    control = control or (config.resolve(config.eval.control) if config.eval.control else None)
    qa = config.resolve(config.eval.qa.path) if config.eval.qa.path else run_dir / QA
    out = out or run_dir / EVAL
    result = evaluate(config, run_dir / DATASET, checkpoint, final_checkpoint(control) if control else None,
                      qa if config.eval.qa.path or qa.exists() else None, out.with_suffix(".samples.jsonl"))
    write_json(out, result)
    info(f"eval: held-out bpb {result.heldout_bpb:.3f} -> {out}")
    return out


def export_model(source: Path, out: Path, tokenizer: Path | None = None, format: str = "hf", dtype: str = "f16") -> Path:
    """Export RUN (its initiation/checkpoint, else train/checkpoint) or a checkpoint folder as a
    Hugging Face folder, or (format "gguf", plain-Llama models) as one GGUF file in `dtype`."""
    checkpoint = final_checkpoint(source) if final_checkpoint(source).is_dir() else source
    if format == "gguf":
        from ltm.model.gguf import export_gguf

        export_gguf(checkpoint, out, tokenizer, dtype)
        info(f"export: GGUF ({dtype}) for llama.cpp -> {out}")
        return out
    from ltm.model.export import export

    architecture = export(checkpoint, out, tokenizer)
    info(f"export: {architecture} -> {out}")
    return out


def report(runs: list[Path], out: Path) -> Path:
    from ltm.report import write_report

    write_report(runs, out)
    info(f"report: {out}")
    return out


def serve(model_dir: Path, host: str, port: int, api_key_env: str | None, memory_dir: Path) -> None:
    """`ltm serve`: the OpenAI-compatible API, scene queries, scene memory and the web page."""
    import os

    import uvicorn

    from ltm.serve.app import check_binding, create_app
    from ltm.serve.engine import Engine
    from ltm.serve.memory import MemoryStore

    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:  # a typo in the name would otherwise serve with no key at all
        raise StageError(f"--api-key-env {api_key_env}: that environment variable is not set or empty; "
                         "export it with the key clients must send, or leave --api-key-env out")
    try:
        check_binding(host, api_key)
    except ValueError as exc:
        raise StageError(str(exc)) from None
    engine = Engine(model_dir)
    try:
        uvicorn.run(create_app(engine, api_key, MemoryStore(memory_dir)), host=host, port=port, log_level="info")
    finally:
        engine.close()


def chat(model_dir: Path, max_tokens: int, temperature: float, top_p: float, system: str | None) -> int:
    """`ltm chat`: a conversation in the terminal."""
    from ltm.serve.chat import chat as talk

    return talk(model_dir, max_tokens, temperature, top_p, system)


def experiment(spec: Path, parallel: int | None = None, mps: bool | None = None) -> None:
    """`ltm experiment`: every cell of a grid, `parallel` at once per GPU (through MPS unless `mps` is
    False), recorded in the workspace's SQLite registry."""
    from ltm.experiment.runner import run_experiment

    run_experiment(spec, parallel, mps)


def runs(workspace: Path, action: str, experiment_name: str | None = None, baseline: str | None = None) -> str:
    """`ltm runs list|compare`: the recorded runs, or the study table (paired with `baseline`)."""
    from ltm.experiment.registry import Registry
    from ltm.experiment.report import paired_table, study_table, unfinished

    path = workspace / "ltm.sqlite"
    if not path.exists():
        raise StageError(f"{path}: no registry; run `ltm experiment` first")
    registry = Registry(path)
    if action == "list":
        return "\n".join(f"{row['experiment']}\t{row['cell']}\tseed {row['seed']}\t{row['status']}\t{row['config_hash']}\t{row['run_dir']}"
                         for row in registry.runs(experiment_name))
    out = []
    for name in sorted({row["experiment"] for row in registry.runs(experiment_name)}):
        out.append(f"## {name}\n\n{study_table(registry, name)}\n")
        if unfinished(registry, name):
            out.append(unfinished(registry, name) + "\n")
        if baseline:
            out.append(f"Paired with {baseline}, seed by seed:\n\n{paired_table(registry, name, baseline)}\n")
    return "\n".join(out)


def absolute(config: RunConfig) -> RunConfig:
    """The config with its input paths (config.INPUT_PATHS, relative to the config file's folder) made absolute."""
    resolved = RunConfig.model_validate(absolute_inputs(config.model_dump(mode="json"), config.resolve(".")))
    resolved._base_dir = config.resolve(".")
    return resolved


def shared_data(config: RunConfig, shared: Path, run_dir: Path, watch: Stopwatch | None = None) -> None:
    """The data stages of `config` (paths absolute) from the cache folder `shared`, each made there
    once by whichever run needs it first (ltm.experiment.shared), hard-linked into RUN_DIR; the
    time of each (made, or waited for) goes to `watch`."""
    from ltm.experiment.shared import link_into

    watch = watch or Stopwatch()
    made = make_shared_data(config, shared, watch)
    with watch("link"):
        for source, name in made:
            link_into(source, run_dir / name)


def make_shared_data(config: RunConfig, shared: Path, watch: Stopwatch | None = None) -> list[tuple[Path, str]]:
    """The data stages of `config` (paths absolute) in the cache folder `shared`, made unless another
    run made them; what a run folder links: (cached path, its name in the run folder)."""
    from ltm.dataset import SceneTable
    from ltm.dataset.build import build_tokenizer
    from ltm.experiment.shared import claimed, data_keys

    keys = data_keys(config)
    watch = watch or Stopwatch()
    docs, scenes_path = shared / f"ingest-{keys['ingest']}" / DOCS, shared / f"scenes-{keys['scenes']}" / SCENES
    tokenizer, dataset = shared / f"tokenizer-{keys['tokenizer']}", shared / f"build-{keys['build']}" / DATASET
    with watch("ingest"), claimed(docs.parent):
        if not docs.exists():
            if config.ingest.paths:
                ingest(config.ingest.paths, docs, config.ingest.tags)
            if config.facts.people:
                facts(config, docs, docs.parent / QA, append=bool(config.ingest.paths))
    with watch("scenes"), claimed(scenes_path.parent):
        if not scenes_path.exists():
            scenes(docs, scenes_path, config)
    with watch("build"), claimed(dataset.parent):
        if not (dataset / "manifest.json").exists():
            if not config.build.tokenizer:  # one tokenizer per distinct training text, reused by the builds that read it
                with claimed(tokenizer):
                    if not (tokenizer / "tokenizer.json").exists():
                        build_tokenizer(SceneTable.from_jsonl(scenes_path), config.build, config.build_seed, tokenizer)
                        info(f"build: tokenizer trained once for every build of this text -> {tokenizer}")
                config = config.model_copy(update={"build": config.build.model_copy(update={"tokenizer": str(tokenizer)})})
            build(config, scenes_path, dataset)
    return [(docs, DOCS), (scenes_path, SCENES), (dataset, DATASET), *([(docs.parent / QA, QA)] if config.facts.people else [])]


def run(config_path: Path, run_dir: Path | None = None, resume: bool = False, overrides: list[str] | None = None,
        shared: Path | None = None) -> Path:
    """Every stage in order into one run folder; return its path. With `resume`, stages whose
    output is already there are kept and training continues from its last checkpoint. `overrides`
    are `--set section.key=value` changes to the config file, validated like it. With `shared`, the
    data stages (ingest, scenes, build) come from that cache folder, made there once for every run
    whose data stages have the same inputs (shared_data)."""
    from ltm.preflight import problems

    config = load_config(config_path, overrides)
    found = problems(config)
    if found:  # before the run folder is made: a typo leaves nothing behind
        raise StageError(f"{config_path}: " + "; ".join(found))
    started = time.perf_counter()
    if run_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(config.out_dir) / f"{config.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # The run folder keeps its own config with input paths made absolute, so later stages
    # (`ltm eval RUN`) can be rerun from anywhere.
    resolved = absolute(config)
    written = dump_config(resolved)
    if resume and (run_dir / CONFIG).exists() and (run_dir / CONFIG).read_text(encoding="utf-8") != written:
        raise StageError(f"--resume: {run_dir / CONFIG} holds another config; resume with the same one or use a new run folder")
    with atomic_write(run_dir / CONFIG) as handle:
        handle.write(written)
    info(f"run folder: {run_dir}")
    initiating = resolved.initiation.mode != "none"
    with_facts = resolved.facts.people > 0
    names = [*(["ingest"] if resolved.ingest.paths else []), *(["facts"] if with_facts else []), "scenes", "build", "train",
             *(["initiation"] if initiating else []), "eval", "report"]

    def stage(name: str, done: Path | None = None, keep: bool = resume) -> bool:
        """Announce the stage; False when its output `done` is already there and may be kept."""
        if keep and done is not None and done.exists():
            info(f"[bold]{names.index(name) + 1}/{len(names)} {name}[/bold]: kept ({done})")
            return False
        info(f"[bold]{names.index(name) + 1}/{len(names)} {name}")
        return True

    watch = Stopwatch()
    if shared is not None:
        shared_data(resolved, shared, run_dir, watch)
    keep_data = resume or shared is not None
    if resolved.ingest.paths and stage("ingest", run_dir / DOCS, keep_data):
        with watch("ingest"):
            ingest(resolved.ingest.paths, run_dir / DOCS, resolved.ingest.tags)
    if with_facts and stage("facts", run_dir / QA, keep_data):
        with watch("facts"):
            facts(resolved, run_dir / DOCS, run_dir / QA, append=bool(resolved.ingest.paths))
    if stage("scenes", run_dir / SCENES, keep_data):
        with watch("scenes"):
            scenes(run_dir / DOCS, run_dir / SCENES, resolved)
    if stage("build", run_dir / DATASET / "manifest.json", keep_data):
        with watch("build"):
            build(resolved, run_dir / SCENES, run_dir / DATASET)
    if stage("train", run_dir / TRAIN / "checkpoint"):
        with watch("train"):  # torch's import, the first to need it, counts here
            from ltm.train.checkpoint import latest

            # Not resuming, the run folder's stages are all written again: so is training's.
            train(resolved, run_dir / DATASET, run_dir / TRAIN, resume=resume and latest(run_dir / TRAIN) is not None, overwrite=True)
    if initiating and stage("initiation", run_dir / INITIATION / "checkpoint"):
        with watch("initiation"):
            initiation(resolved, run_dir)
    if stage("eval", run_dir / EVAL):
        with watch("eval"):
            evaluate_run(run_dir)
    stage("report")
    with watch("report"):
        report([run_dir], run_dir / REPORT)
    from ltm.formats import StageTimes

    write_json(run_dir / TIMES, StageTimes(stages=watch.seconds, total_s=time.perf_counter() - started))
    info(f"done in {time.perf_counter() - started:.0f}s. Run folder: {run_dir}")
    return run_dir
