"""The run config: one YAML file drives every stage (`ltm run`), each stage reads its own section.

Unknown keys are errors, so a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import copy

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(Section):
    paths: list[str] = Field(default_factory=list, description="files or folders, relative to the config file")
    tags: dict[str, str] = Field(default_factory=dict, description="tags put on every document")


class FactsConfig(Section):
    """A synthetic fact set (`ltm facts`, docs/eval.md "Fact sets"): made-up people, their
    biographies as documents and questions about them. `ltm run` adds it to the ingested documents."""

    people: int = Field(0, ge=0, description="fictional people per language; 0 = no fact set")
    languages: list[Literal["en", "ru"]] = Field(default_factory=lambda: ["en", "ru"], min_length=1)
    heldout_share: float = Field(0.2, ge=0, lt=1, description="share of each language's people whose biographies are held out "
                                 "(never trained): their questions measure chance")
    qa_train_share: float = Field(0.0, ge=0, le=1, description="share of the train people whose question-answer pairs are "
                                  "training text too (Allen-Zhu & Li 3.1); the others' questions test extraction")
    renderings: int = Field(1, ge=1, description="biographies per person, each with its templates drawn anew (bioS multi)")
    permute: bool = Field(False, description="each biography's sentences in a random order (bioS permute)")
    seed: int = Field(0, description="draws the people and their texts; apart from the run's seed, so every seed and arm "
                                     "of a comparison reads the same fact set")


class LLMConfig(Section):
    """An OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, `ltm serve`, ...)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="up to and including /v1")
    model: str = "ltm"
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the key; unset = no key")
    concurrency: int = Field(4, ge=1, description="requests in flight at once")
    retries: int = Field(3, ge=0, description="extra attempts after a failed request or an invalid answer")
    timeout_s: float = Field(120.0, gt=0)
    temperature: float = Field(0.0, ge=0)
    cache_dir: str = Field(".ltm-cache/llm", description="answers cached on disk by text, prompt version and model")


class ScenesConfig(Section):
    min_tokens: int = Field(60, ge=1, description="a scene is not cut before it has this many words")
    max_tokens: int = Field(300, ge=2, description="a scene is always cut before it would exceed this many words")
    annotator: Literal["heuristic", "llm"] = "heuristic"
    llm: LLMConfig = Field(default_factory=LLMConfig)
    link_k: int = Field(3, ge=0, description="references to the k most related earlier scenes; 0 = no linking")
    link_min_score: float = Field(0.2, ge=-1, le=1, description="cosine similarity a reference needs at least")
    link_cross_min_score: float | None = Field(
        None, ge=-1, le=1,
        description="cosine similarity a reference to another document's scene needs at least; none: no references across "
                    "documents (on ltm's labelled pairs, bench/data/scenes_labelled/links.jsonl, no score made them mostly meaningful)")
    embedder: Literal["tfidf", "minilm"] = Field("tfidf", description="scene vectors for linking: TF-IDF + SVD, or MiniLM")
    link_exact_up_to: int = Field(100_000, ge=2, description="up to this many scenes are linked by exact search (a flat FAISS "
                                  "index, time quadratic in the scenes); more go through an HNSW graph (approximate, near-linear)")

    @model_validator(mode="after")
    def _range(self) -> "ScenesConfig":
        if self.min_tokens >= self.max_tokens:
            raise ValueError(f"min_tokens={self.min_tokens} must be below max_tokens={self.max_tokens}")
        return self


class ChunkEpochs(Section):
    k: int = Field(ge=1, description="times each chunk is read before the next")
    size: int = Field(ge=1, description="chunk size in tokens")


class Mixture(Section):
    """Unique background text plus a target set read again and again, at a fixed share of the budget
    (Hernandez et al. 2022's design): the target is chosen once, the background is read once."""

    share: float = Field(gt=0, lt=1, description="share of the budget spent on passes over the target")
    target: dict[str, str | list[str]] | None = Field(
        None, description="document tags that make a document part of the target (e.g. {kind: [biography, qa]}); "
                          "default: a seeded selection of share x budget / repeats tokens, stratified by language")
    repeats: int | None = Field(None, ge=1, description="passes over a selected target (sets its size); with a tagged "
                                                        "target the passes follow from its size and the share")

    @model_validator(mode="after")
    def _target_or_repeats(self) -> "Mixture":
        if (self.target is None) == (self.repeats is None):
            raise ValueError("mixture takes either target (tags choosing the repeated documents) or repeats (a selected target's passes)")
        return self

    def matches(self, tags: dict) -> bool:
        """Whether a document with these tags is part of the target."""
        return all(str(tags.get(key)) in ([value] if isinstance(value, str) else value) for key, value in (self.target or {}).items())


class Regime(Section):
    """How repetition is scheduled under the token budget; exactly one key is set.

    In YAML: `regime: unique`, or `regime: {corpus_epochs: 4}`, `{doc_consecutive: 100}`,
    `{chunk_epochs: {k: 100, size: 1000000}}`, `{spiral: 100}`, `{mixture: {share: 0.5, repeats: 20}}`.
    """

    unique: bool | None = None
    corpus_epochs: int | None = Field(None, ge=1)
    doc_consecutive: int | None = Field(None, ge=1)
    chunk_epochs: ChunkEpochs | None = None
    spiral: int | None = Field(None, ge=1)
    mixture: Mixture | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value):
        if isinstance(value, str):
            if value != "unique":
                raise ValueError(f"unknown regime {value!r}: use unique, or a mapping with one of corpus_epochs, doc_consecutive, chunk_epochs, spiral, mixture")
            return {"unique": True}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "Regime":
        chosen = [k for k, v in self.model_dump(exclude_none=True).items() if v not in (None, False)]
        if len(chosen) != 1:
            raise ValueError(f"a regime names exactly one of unique, corpus_epochs, doc_consecutive, chunk_epochs, spiral, mixture (got {chosen or 'none'})")
        return self

    @property
    def name(self) -> str:
        return next(k for k, v in self.model_dump(exclude_none=True).items() if v not in (None, False))

    @property
    def repeats(self) -> int:
        """How many times each selected text is read: the budget divided by this is the unique data used."""
        if self.unique:
            return 1
        if self.chunk_epochs is not None:
            return self.chunk_epochs.k
        if self.mixture is not None:  # the background is read once; the target's passes are counted by the build
            return 1
        return self.corpus_epochs or self.doc_consecutive or self.spiral

    def describe(self) -> str:
        if self.unique:
            return "unique"
        if self.chunk_epochs is not None:
            return f"chunk_epochs(k={self.chunk_epochs.k}, size={self.chunk_epochs.size})"
        if self.mixture is not None:
            m = self.mixture
            target = ",".join(f"{k}={v if isinstance(v, str) else '|'.join(v)}" for k, v in m.target.items()) if m.target else f"repeats={m.repeats}"
            return f"mixture(share={m.share}, {target})"
        return f"{self.name}={self.repeats}"


class LensStep(Section):
    passes: int = Field(ge=1)
    lens: str


class Curriculum(Section):
    """The order of texts: `shuffle` (the baseline), phases `by: tag` (document tags, in the order
    listed) or `by: difficulty` (per-scene difficulty scores cut into `levels`)."""

    by: Literal["shuffle", "tag", "difficulty"] = "shuffle"
    key: str = Field("phase", description="the document tag that names the phase (by: tag)")
    phases: list[str] = Field(default_factory=list, description="phase names in reading order (by: tag)")
    levels: int = Field(3, ge=1, description="difficulty levels (by: difficulty)")
    hardest_first: bool = Field(False, description="by: difficulty: read the levels hardest first (the control of easy -> hard)")
    replay: float = Field(0.0, ge=0, lt=1, description="fraction of each phase's tokens replayed from earlier phases")

    @model_validator(mode="after")
    def _phases_named(self) -> "Curriculum":
        if self.by == "tag" and not self.phases:
            raise ValueError("curriculum by: tag needs `phases`, the tag values in reading order")
        return self


class BuildConfig(Section):
    vocab_size: int = Field(4096, ge=300)
    heldout_docs: float = Field(0.1, gt=0, lt=1, description="fraction of documents held out, per language")
    heldout: list[str] | None = Field(None, description="hold out exactly these document ids (and those tagged split: heldout), "
                                      "whatever the seed: one held-out set for every arm and seed of a comparison")
    heldout_seed: int | None = Field(None, description="draws the held-out documents; default: the run's seed. Set it to keep "
                                     "the held-out set fixed while the seed varies")
    dtype: str = Field("auto", pattern="^(auto|uint16|uint32)$")
    regime: Regime = Field(default_factory=lambda: Regime(unique=True))
    budget_tokens: int | None = Field(None, ge=1, description="training tokens; default: every token once (unique)")
    curriculum: Curriculum = Field(default_factory=Curriculum)
    lenses: list[LensStep] = Field(
        default_factory=lambda: [LensStep(passes=1, lens="plain")],
        description="the spiral schedule: passes per lens, in order, cycled when the regime asks for more passes",
    )
    frames: Literal["matched", "shuffled"] = Field(
        "matched", description="shuffled: the control for lenses, each lens frame (header, questions) taken from another "
                               "document's scene around the passage read, so frames carry no information about their text")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="endpoint for generative lenses (commentary, analogy, paraphrase)")
    heldout_lenses: list[str] = Field(default_factory=lambda: ["plain"], description="built-in lenses the held-out documents are also "
                                      "written under, so evaluation can report bits per byte by lens")
    shard_tokens: int = Field(50_000_000, ge=1024, description="tokens per shard file")
    tokenizer_sample_mb: float = Field(200.0, gt=0, description="train the tokenizer on at most this much text")
    tokenizer: str | None = Field(None, description="reuse this tokenizer folder (e.g. another dataset's) instead of training one")
    workers: int = Field(0, ge=0, description="processes that tokenize; 0 = one per core")
    dialogue: Literal["chat", "text"] = Field(
        "chat", description="dialogues (chat exports): chat = each turn through the tokenizer's chat template, "
                            "the format `ltm serve` talks in, with the user's turns under the loss mask; text = "
                            "'User: ...' paragraphs, read like prose")
    system_prompt: str | None = Field(None, description="chat: a system turn opening every dialogue (under the loss mask)")
    learn_user_turns: bool = Field(False, description="chat: learn the user's turns too (the mask keeps only the system prompt)")
    scene_fit: Literal["window", "split"] = Field(
        "window", description="a scene occurrence longer than the model's context (model.max_seq_len): window = written whole, "
                              "training's windows cut it, so a lens header shares a window with the start of its text only (the "
                              "build warns with the share of such occurrences); split = cut into pieces that fit the context, each "
                              "opening with the lens's header (chat turns stay whole)")


class ModelConfig(Section):
    """Every model hyperparameter, declared once: ltm.model.config.LtmConfig takes these (under
    Llama's names where Llama has one) and validates itself through this class."""

    d_model: int = Field(256, ge=8)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int = Field(2, ge=1)
    d_ff: int | None = Field(None, description="SwiGLU hidden width; default 8/3 d_model rounded to 32")
    max_seq_len: int = Field(128, ge=8, description="context length used for training and evaluation")
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    # Scene-aware parts, each a switch (docs/model.md); all off = a plain Llama.
    scene_state: bool = Field(False, description="add scene-state embeddings read from the marker tokens")
    channels: int = Field(0, ge=0, description="soft-routed MLP channels per layer; 0 or 1 = off")
    channel_names: list[str] | None = Field(None, description="default: logician, poet, archetype, ironist")
    channel_aux_weight: float = Field(0.0, ge=0, description="weight of the loss aligning the gate with the pass's lens")
    loop_core_layers: int = Field(0, ge=0, description="layers of the self-loop's core; 0 = off")
    loop_prelude_layers: int = Field(1, ge=0)
    loop_max_steps: int = Field(4, ge=1, description="training draws the number of loop steps from 1..this")
    loop_backprop_steps: int = Field(2, ge=1, description="gradients flow through this many last steps")
    think_steps: int = Field(2, ge=1, description="loop steps at inference")
    scene_aux_weight: float = Field(0.0, ge=0, description="weight of the scene-consistency loss")
    loop_aux_weight: float = Field(0.0, ge=0, description="weight of the loop-convergence loss")

    @model_validator(mode="after")
    def _shape_fits(self) -> "ModelConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.loop_core_layers and self.loop_prelude_layers + self.loop_core_layers > self.n_layers:
            raise ValueError(f"loop_prelude_layers + loop_core_layers = {self.loop_prelude_layers + self.loop_core_layers} "
                             f"exceeds n_layers={self.n_layers}")
        if self.channel_names is not None and self.channels > 1 and len(self.channel_names) != self.channels:
            raise ValueError(f"channel_names has {len(self.channel_names)} names for {self.channels} channels")
        return self

    @property
    def ffn_width(self) -> int:
        """d_ff, or SwiGLU's usual width: 8/3 d_model (a 4x GELU MLP's parameters), rounded up to 32."""
        return self.d_ff or 32 * -(-(8 * self.d_model // 3) // 32)


class SpeedConfig(Section):
    """How training runs fast. `mode` decides every switch left unset: `auto` turns on, per GPU and
    model, what was measured to pay without costing held-out loss beyond run-to-run noise (FP8
    products on GPUs that have them, CUDA graphs on one GPU, kernel tuning when the run is long
    enough to repay it); `fast` turns on everything the GPU can do; `exact` keeps the reference
    numerics (no FP8, an fp32 residual stream, no CUDA graphs, no tuning). In YAML `speed: fast`,
    or a mapping with `mode` and any switch. Resuming may change any of it: it only rounds
    differently."""

    mode: Literal["auto", "fast", "exact"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] | None = Field(None, description="bf16 autocast or fp32; default: bf16 on CUDA, fp32 on CPU")
    compile: bool | None = Field(None, description="torch.compile the model; default: on for CUDA")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] | None = Field(
        None, description="reduce-overhead: forward and backward replayed as CUDA graphs (one GPU, not a self-looped model); "
                          "max-autotune-no-cudagraphs: autotuned matmuls, minutes more compilation")
    tune_kernels: bool | None = Field(None, description="benchmark each generated Triton kernel's launch settings while "
                                                        "compiling (inductor's coordinate-descent tuning): minutes more compilation")
    residual_dtype: Literal["fp32", "bf16"] | None = Field(None, description="under bf16 autocast, the residual stream's dtype "
                                                                             "(bf16: half the elementwise memory traffic)")
    fp8_head: bool | None = Field(None, description="the output projection and loss in FP8 (GPUs of compute capability 8.9+)")
    fp8_body: bool | None = Field(None, description="the decoder layers' products in FP8 with fixed scales (GPUs of compute capability 8.9+)")
    fp8_weight_grad: bool | None = Field(None, description="with fp8_body: the weight gradients' products in FP8 too")
    deterministic: bool | None = Field(
        None, description="on a GPU, kernels whose sums do not depend on timing (attention's backward pass among them): a run "
                          "repeats bit for bit, also while other runs share the GPU; default: on, except in mode fast")

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value):
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fp8_weight_grad_needs_fp8_body(self) -> "SpeedConfig":
        if self.fp8_weight_grad and self.fp8_body is False:
            raise ValueError("fp8_weight_grad: true needs fp8_body (it changes the products fp8_body makes)")
        return self


class TrainConfig(Section):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step, across all devices")
    micro_batch_size: int | None = Field(None, ge=1, description="sequences per forward pass on one device; "
                                         "default: batch_size / devices (no accumulation)")
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(30, ge=0)
    schedule: Literal["cosine", "wsd"] = Field("cosine", description="warmup then cosine decay, or warmup-stable-decay")
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: the last fraction of steps decays linearly")
    optimizer: Literal["adamw", "muon"] = Field("adamw", description="muon: Muon for matrices, AdamW for the rest")
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=1, description="held-out loss is measured every N steps")
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="write a resumable checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = Field(2, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distributed: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun with several processes")
    speed: SpeedConfig = Field(default_factory=SpeedConfig, description="how fast and in which numerics "
                               "training runs: auto, fast or exact, and expert switches (docs/training.md, Speed)")
    logger: Literal["tensorboard", "trackio", "wandb", "none"] = Field(
        "tensorboard", description="where metrics go besides OUT/metrics.jsonl; trackio and wandb are extras "
                                   "(pip install ltm[trackio] / ltm[wandb]), all three work offline")
    threads: int | None = Field(None, description="CPU threads; default all cores")


class InitiationConfig(Section):
    """The final stage after pretraining: `lora` (base frozen, LoRA merged into the weights),
    `full` (every parameter), or `none`; on a separate dataset of dialogue scenes."""

    mode: Literal["none", "lora", "full"] = "none"
    paths: list[str] = Field(default_factory=list, description="dialogue texts for `ltm run` to ingest and build with the same tokenizer")
    steps: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, ge=1)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


class QAEvalConfig(Section):
    """Questions about a fact set's people (docs/eval.md, "QA"): multiple choice by log-likelihood
    and exact match of the greedy answer."""

    path: str | None = Field(None, description="a QA JSONL (ltm.qa/1); default: the run folder's qa.jsonl, made with its fact set")
    scoring: Literal["mean", "sum"] = Field("mean", description="multiple choice ranks the options by mean log-probability per "
                                            "answer token (length-normalised) or by their sum")
    forms: list[Literal["question", "statement"]] = Field(
        default_factory=lambda: ["question", "statement"], min_length=1,
        description="prompt forms asked: question ('Question: ...\\nAnswer:') and statement (the biography's sentence up to the value)")
    max_pairs: int | None = Field(None, ge=1, description="at most this many pairs per group of people (train, qa_trained, heldout)")


class ClozeConfig(Section):
    """Cloze on real text (docs/eval.md, "Cloze"): a content word masked, candidates ranked by log-likelihood."""

    items: int = Field(200, ge=1, description="sentences asked per split (held-out text, training text)")
    candidates: int = Field(5, ge=2, description="the true word and candidates - 1 distractors (chance 1/candidates)")
    min_word_chars: int = Field(5, ge=1, description="a word of at least this many letters may be masked")


class EvalConfig(Section):
    samples: list[str] = Field(default_factory=list, description="prompts whose continuations the report shows")
    sample_tokens: int = Field(48, ge=1)
    prompts: str | None = Field(None, description="YAML {lang: [prompts]} for the probes; default: ltm's own set")
    samples_per_prompt: int = Field(2, ge=1)
    temperature: float = Field(0.8, ge=0)
    memorization_per_bucket: int = Field(64, ge=1, description="training sequences per times-seen bucket")
    control: str | None = Field(None, description="another run folder whose model is the memorization control; default: untrained")
    wikitext: str | None = Field(None, description="WikiText-2 validation file, an out-of-domain reference (relative to the config)")
    wikitext_max_tokens: int = Field(20000, ge=100)
    data_sample_tokens: int = Field(200000, ge=1000, description="training tokens decoded to measure the probes' data rates")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1, description="whole-context sequences per forward pass of eval (bits per byte, the "
                                               "log-likelihood scorer); shorter sequences go more to a pass, the same tokens")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the numerics eval computes in: auto as training (train.speed.precision: bf16 autocast on a GPU), "
                            "fp32 or bf16 whatever training chose")
    qa: QAEvalConfig = Field(default_factory=QAEvalConfig)
    cloze: ClozeConfig = Field(default_factory=ClozeConfig)
    judge: LLMConfig | None = Field(None, description="an OpenAI-compatible endpoint that counts Gandhi et al.'s behaviours per sample")


class RunConfig(Section):
    name: str = "run"
    seed: int = 1234
    data_seed: int | None = Field(
        None, description="seed of the data alone: scene linking's projection, the held-out documents, which texts a "
                          "regime selects and their order; default: `seed`. Fix it and `seed` changes only the model's "
                          "initialisation and evaluation's draws, so an experiment's seeds share one build")
    out_dir: str = Field("runs", description="parent folder of run folders, relative to the working directory")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    facts: FactsConfig = Field(default_factory=FactsConfig)
    scenes: ScenesConfig = Field(default_factory=ScenesConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    initiation: InitiationConfig = Field(default_factory=InitiationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    # Folder of the config file: relative input paths start there, not at the working directory.
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def build_seed(self) -> int:
        """The seed every data stage (scenes, build) uses: data_seed, else seed."""
        return self.seed if self.data_seed is None else self.data_seed

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self._base_dir / p


class ExperimentSpec(Section):
    """An experiment file (`ltm experiment`, docs/experiments.md): a base run config, the axes to vary
    and the seeds; ltm.experiment.spec turns it into cells."""

    name: str
    base: str = Field(description="the base run config, relative to the experiment file")
    workspace: str | None = Field(None, description="run folders, logs and the SQLite registry; default: experiments/<name>")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    budget_tokens: int | None = Field(None, ge=1, description="written into every cell's build section: one token budget for all")
    axes: dict[str, dict[str, dict]] = Field(default_factory=dict, description="axis -> value -> overrides of the base config")
    parallel: int | None = Field(
        None, ge=1, description="cells run at once on each GPU, each in a worker process of its own (CUDA MPS, when its "
                                "daemon runs, lets their kernels overlap); default: as many as the free GPU memory holds for "
                                "the largest cell's model, at most one per CPU core and at most 12; 1 on CPUs")
    mps: bool = Field(True, description="with more than one cell per GPU, run the workers through a CUDA MPS daemon of their own "
                                        "(started and stopped by ltm when nvidia-cuda-mps-control is there) so their kernels overlap")


class ConfigError(ValueError):
    """A config that cannot be used, with a message naming the file and the field."""


# The fields of a run config that name input files or folders: relative to the config file's folder.
INPUT_PATHS = (("ingest", "paths"), ("initiation", "paths"), ("eval", "wikitext"), ("eval", "prompts"), ("eval", "control"),
               ("eval", "qa", "path"), ("build", "tokenizer"))


def absolute_inputs(raw: dict, folder: Path) -> dict:
    """A copy of the raw config mapping `raw` (a whole config or a part of one, e.g. an experiment's
    axis) with every input path it sets (INPUT_PATHS) made absolute against `folder`."""
    out = copy.deepcopy(raw)
    for *sections, key in INPUT_PATHS:
        holder = out
        for section in sections:
            holder = holder.get(section) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and holder.get(key):
            value = holder[key]
            holder[key] = [str((folder / p).resolve()) for p in value] if isinstance(value, list) else str((folder / value).resolve())
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The config in `path`, with `overrides` ("section.key=value", a value read as YAML: `train.lr=1e-3`,
    `build.regime={spiral: 10}`) applied on top and the whole validated as one file would be."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for override in overrides or []:
        _override(raw, override, path)
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        given = f" (with --set {' --set '.join(overrides)})" if overrides else ""
        raise ConfigError(f"{path}{given}: {problems}") from None
    config._base_dir = path.resolve().parent
    return config


def _override(raw: dict, override: str, path: Path) -> None:
    """Set one dotted key in the raw config mapping; a key that names no field is left for the
    validation to refuse, so a typo is reported like one in the file."""
    key, sep, text = override.partition("=")
    names = key.strip().split(".")
    if not sep or not all(names):
        raise ConfigError(f"--set {override!r}: expected section.key=value, e.g. train.lr=1e-3")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML: {exc}") from None
    node = raw
    for name in names[:-1]:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {path} sets {name} to {child!r}, not a mapping: set it whole, "
                              f"e.g. --set {'.'.join(names[:names.index(name) + 1])}={{...}}")
        node = child
    node[names[-1]] = value


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
