"""`ltm build`: scenes -> tokenizer, token shards and a manifest with the provenance of every token.

Steps, in order (see docs/build.md):
1. refuse a config that cannot work (unknown lens, empty phase) before anything is written;
2. set held-out documents aside (per language) before any regime applies;
3. train the byte-level BPE tokenizer on the training text (up to `tokenizer_sample_mb`);
4. tokenize every scene once (tiktoken over our BPE, in `workers` processes), keeping the ids in an
   on-disk store, and, for a difficulty curriculum, score each scene;
5. order the units (curriculum), run the regime until the budget is spent, and write the shards;
6. write the held-out split (each held-out document once, plain) and the manifest.
The dataset folder is assembled beside its final place and renamed into it at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ltm.dataset.curriculum import CurriculumError, assign_phases, make_units
from ltm.dataset.dialogue import ChatForm
from ltm.dataset.difficulty import combine, signals
from ltm.dataset.fast_encoder import FastEncoder, encode_parallel
from ltm.markup.lenses import check_lenses, render
from ltm.dataset.regimes import Occurrence, RegimeError, occurrences
from ltm.dataset.scenes_table import SceneInfo, SceneTable
from ltm.dataset.shards import ShardWriter
from ltm.dataset.reader import DatasetError, load_segments, repetition_bucket
from ltm.markup import BODY, EOT, GENERATIVE_LENSES, SPECIAL_TOKENS, Marker
from ltm.dataset.tokenizer import load_tokenizer, save_tokenizer, tokenizer_sha256, train_tokenizer
from ltm.config import BuildConfig
from ltm.formats import Manifest, Scene, ShardInfo
from ltm.io import atomic_dir, write_json
from ltm.log import info, progress, warn

BATCH = 2048  # scenes tokenized per call into the Rust thread pool


class BuildError(DatasetError):
    """Input or config that cannot make a dataset, with what to change."""


def split_heldout(infos: list[SceneInfo], fraction: float, seed: int, fixed: list[str] | None = None) -> set[str]:
    """The held-out documents: a document tagged `split: heldout` (a fact set's held-out people) or
    named in `fixed` always, one tagged `split: train` never; of the rest, `fraction` per language
    (at least one where a language has two or more), ranked by a hash of `seed` and the id, so the
    same seed picks the same documents whatever the run's other settings."""
    known = {scene.doc_id for scene in infos}
    unknown = [d for d in fixed or [] if d not in known]
    if unknown:
        raise BuildError(f"build.heldout names documents that are not in the scenes: {unknown[:5]}")
    heldout: set[str] = set(fixed or [])
    by_lang: dict[str, list[str]] = defaultdict(list)
    for scene in infos:
        tagged = scene.meta.get("split")
        if tagged == "heldout":
            heldout.add(scene.doc_id)
        elif tagged != "train" and not fixed and scene.doc_id not in by_lang[scene.lang]:
            by_lang[scene.lang].append(scene.doc_id)
    for docs in by_lang.values():
        if len(docs) < 2:
            continue
        ranked = sorted(docs, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
        heldout.update(ranked[: max(1, round(fraction * len(docs)))])
    return heldout


class _Encoder:
    """Turns pieces (text and Marker tokens) into ids. Text never turns into marker ids, even when
    it spells one out; markers are inserted by id."""

    def __init__(self, hf, tokenizer_json: Path):
        self.fast = FastEncoder(tokenizer_json)
        self.ids = {token: hf.convert_tokens_to_ids(token) for token in hf.all_special_tokens}

    def texts(self, texts: list[str]) -> list[np.ndarray]:
        return self.fast.encode(texts)

    def pieces(self, rendered: list[list[str]]) -> list[np.ndarray]:
        plain = [p for pieces in rendered for p in pieces if not isinstance(p, Marker)]
        encoded = iter(self.texts(plain))
        out = []
        for pieces in rendered:
            parts = [np.asarray([self.ids[p]]) if isinstance(p, Marker) else next(encoded) for p in pieces]
            out.append(np.concatenate(parts))
        return out


def _tokenize_all(table: SceneTable, tokenizer_json: Path, store: Path, score: bool, workers: int,
                  chat: ChatForm, on_batch: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every scene in its plain form (scene markers around its text, or a dialogue turn in the chat
    form) into `store` (one flat file), encoded by `workers` processes; return offsets, counts and
    (for a difficulty curriculum) difficulty scores. `on_batch(scenes)` after each batch."""
    offsets = np.zeros(len(table) + 1, dtype=np.int64)
    per_text: list[tuple[float, float, float]] = []
    frames = np.asarray([chat.frame(scene) for scene in table.infos], dtype=np.uint32).reshape(-1, 2)

    def batches():
        for start in range(0, len(table), BATCH):
            indices = range(start, min(start + BATCH, len(table)))
            texts = [chat.text(table.infos[i], text) for i, text in zip(indices, table.texts(indices))]
            if score:
                per_text.extend(signals(t) for t in texts)
            yield texts

    i = 0
    with open(store, "wb") as handle:
        for ids, lengths in encode_parallel(tokenizer_json, batches(), workers):
            # Wrap each scene in its markers in one vectorised step: insert begin/end at the cuts.
            cuts = np.concatenate([[0], np.cumsum(lengths)])
            wrapped = np.insert(ids, np.repeat(cuts, [1] + [2] * (len(cuts) - 2) + [1]), frames[i : i + len(lengths)].ravel())
            wrapped.astype(np.uint32).tofile(handle)
            offsets[i + 1 : i + 1 + len(lengths)] = offsets[i] + np.cumsum(lengths + 2)
            i += len(lengths)
            on_batch(len(lengths))
    return offsets, np.diff(offsets), combine(per_text) if score else None


def _estimate_expansion(table: SceneTable, encoder: _Encoder, config: BuildConfig, generated: dict, counts: np.ndarray, indices: list[int]) -> float:
    """Tokens a spiral pass takes per plain token, averaged over the lens schedule on a sample."""
    if not config.regime.spiral:  # a mixture counts its lens passes exactly (_Output.tokens)
        return 1.0
    sample = indices[:: max(1, len(indices) // 200)][:200]
    plain = sum(int(counts[i]) for i in sample)
    weighted = 0.0
    for step in config.lenses:
        rendered = [render(table.scene(i), step.lens, 0, generated.get(step.lens, {}).get(table.infos[i].scene_id)) for i in sample
                    if step.lens not in GENERATIVE_LENSES or table.infos[i].scene_id in generated.get(step.lens, {})]
        tokens = sum(len(ids) for ids in encoder.pieces(rendered)) if rendered else plain
        weighted += step.passes * tokens / max(plain, 1)
    return weighted / sum(step.passes for step in config.lenses)


def build_dataset(table: SceneTable, config: BuildConfig, seed: int, out_dir: str | Path, context: int | None = None) -> Manifest:
    """`context`: the model's context in tokens (model.max_seq_len), for build.scene_fit and the
    warning about scenes longer than it; None: not known, neither."""
    out_dir = Path(out_dir)
    try:
        check_lenses([step.lens for step in config.lenses] + config.heldout_lenses)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    generative = [lens for lens in config.heldout_lenses if lens in GENERATIVE_LENSES]
    if generative:
        raise BuildError(f"build.heldout_lenses: {generative} need a model's text; held-out documents take built-in lenses only")
    if not len(table):
        raise BuildError("no scenes to build from: run `ltm scenes` on a DOCS.jsonl with text first")
    infos = table.infos
    heldout_seed = seed if config.heldout_seed is None else config.heldout_seed
    heldout = split_heldout(infos, config.heldout_docs, heldout_seed, config.heldout)
    if not heldout:
        raise BuildError("no document could be held out: give at least two documents of one language")
    doc_order = list(dict.fromkeys(s.doc_id for s in infos))
    train_docs = [d for d in doc_order if d not in heldout]
    heldout_docs = [d for d in doc_order if d in heldout]
    units = make_units(infos, train_docs, whole_documents=bool(config.regime.doc_consecutive), whole_dialogues=config.dialogue == "chat")
    try:  # tag phases are checked now, before any work; difficulty phases once scores exist
        phases = assign_phases(units, infos, config.curriculum) if config.curriculum.by != "difficulty" else []
    except CurriculumError as exc:
        raise BuildError(str(exc)) from None

    with atomic_dir(out_dir) as tmp, progress(transient=True) as bar:
        train_indices = [i for u in units for i in u.scenes]
        hf = _tokenizer(table, train_indices, config, tmp / "tokenizer")
        vocab = len(hf)
        dtype = config.dtype if config.dtype != "auto" else ("uint16" if vocab <= 2**16 else "uint32")
        if dtype == "uint16" and vocab > 2**16:
            raise BuildError(f"vocab_size {vocab} does not fit uint16: set build.dtype to uint32")
        encoder = _Encoder(hf, tmp / "tokenizer" / "tokenizer.json")
        chat = ChatForm(config, encoder.ids, encoder.texts)
        store = tmp / ".plain_ids.bin"
        workers = config.workers or os.cpu_count() or 1
        encoding = bar.add_task("build: encoding", total=len(table), info="scenes")
        offsets, counts, difficulty = _tokenize_all(table, tmp / "tokenizer" / "tokenizer.json", store, config.curriculum.by == "difficulty",
                                                    workers, chat, on_batch=lambda n: bar.advance(encoding, n))
        if config.curriculum.by == "difficulty":
            try:
                phases = assign_phases(units, infos, config.curriculum, difficulty)
            except CurriculumError as exc:
                raise BuildError(str(exc)) from None
        plain_ids = np.memmap(store, dtype=np.uint32, mode="r") if offsets[-1] else np.zeros(0, dtype=np.uint32)
        data_tokens = int(sum(counts[i] for i in train_indices)) + len(units)  # each unit opens with an end-of-text token
        budget = config.budget_tokens or data_tokens
        # Without a budget, `unique` writes everything once (replayed units included); with one, every
        # regime stops at exactly the budget.
        limit = None if config.budget_tokens is None and config.regime.unique else budget

        generated = _generate(table, config, train_indices)
        expansion = _estimate_expansion(table, encoder, config, generated, counts, train_indices)
        lens_names = list(dict.fromkeys(["plain", *(step.lens for step in config.lenses), *config.heldout_lenses]))
        out = _Output(table, encoder, plain_ids, offsets, generated, chat, config, dtype, tmp,
                      {d: n for n, d in enumerate(doc_order)}, lens_names, context if config.scene_fit == "split" else None)
        stream = occurrences(units, phases, config, counts, budget, seed, expansion, out.tokens)
        try:
            writing = bar.add_task("build: writing", total=budget, info="training tokens")
            train_writer, seen = _write_train(out, stream, limit, phases, on_written=lambda n: bar.update(writing, completed=n))
        except RegimeError as exc:
            raise BuildError(str(exc)) from None
        heldout_writer = _write_heldout(out, heldout)
        del plain_ids, out
        store.unlink()

        stats = _stats(tmp, infos, train_docs, heldout_docs, data_tokens, seen, lens_names, phases, table)
        stats["train"]["masked_tokens"], stats["heldout"]["masked_tokens"] = train_writer.masked_tokens, heldout_writer.masked_tokens
        manifest = Manifest(
            tokenizer="tokenizer", tokenizer_sha256=tokenizer_sha256(tmp / "tokenizer"), vocab_size=vocab, dtype=dtype,
            seed=seed, regime=config.regime.describe(), curriculum=_describe_curriculum(config), budget_tokens=train_writer.written,
            shards=[ShardInfo(path=n, split="train", tokens=t) for n, t in train_writer.shards]
            + [ShardInfo(path=n, split="heldout", tokens=t) for n, t in heldout_writer.shards],
            docs=doc_order, doc_tags=_doc_tags(infos), lenses=lens_names, phases=phases, heldout_docs=heldout_docs, stats=stats,
        )
        write_json(tmp / "manifest.json", manifest)
    for split in ("train", "heldout"):
        info(f"  {split}: {manifest.stats[split]['documents']} documents, {manifest.split_tokens(split):,} tokens")
    if context and config.scene_fit == "window":
        _warn_long_scenes(out_dir, context)
    by_phase = manifest.stats["train"]["tokens_by_phase"]
    if len(by_phase) > 1:
        written = max(1, sum(by_phase.values()))
        info("  tokens by phase: " + ", ".join(f"{p} {n:,} ({n / written:.0%})" for p, n in by_phase.items()))
    return manifest


@dataclass
class _Output:
    """What writing a split reads: the scenes, their plain forms (encoded once, in the store), the
    generated lens texts, the chat form, and the name tables the provenance columns index."""

    table: SceneTable
    encoder: _Encoder
    plain_ids: np.ndarray
    offsets: np.ndarray
    generated: dict[str, dict[str, str]]
    chat: ChatForm
    config: BuildConfig
    dtype: str
    folder: Path
    doc_index: dict[str, int]
    lens_names: list[str]
    split_at: int | None  # build.scene_fit split: occurrences longer than this many tokens are cut into pieces
    frame_pool: dict[str, list[int]] = field(default_factory=dict)
    encoded: dict[Occurrence, np.ndarray] = field(default_factory=dict)  # costed by `tokens`, not yet written

    def writer(self, split: str, limit: int | None = None) -> ShardWriter:
        return ShardWriter(self.folder, split, self.dtype, self.config.shard_tokens, limit=limit)

    def plain(self, i: int) -> np.ndarray:
        return self.plain_ids[self.offsets[i] : self.offsets[i + 1]]

    def lensed(self, o: Occurrence) -> bool:
        """Whether the occurrence is written under its lens; a chat turn, or a generative lens without
        its text, reads plain."""
        return o.lens != "plain" and not self.chat.applies(self.table.infos[o.scene]) and _lens_text_ready(o, self)

    def rendering(self, o: Occurrence) -> list[str]:
        return render(self.framed(o), o.lens, o.pass_index, self.generated.get(o.lens, {}).get(self.table.infos[o.scene].scene_id))

    def tokens(self, o: Occurrence) -> int:
        """What writing the occurrence costs, exactly (its end-of-text token included)."""
        if not self.lensed(o):
            return int(o.unit_start) + int(self.offsets[o.scene + 1] - self.offsets[o.scene])
        self.encoded[o] = self.encoder.pieces([self.rendering(o)])[0]  # the writer takes it from here
        return int(o.unit_start) + len(self.encoded[o])

    def framed(self, o: Occurrence) -> Scene:
        """The scene a lens frames: itself, or under `frames: shuffled` the annotation of a scene of
        another document in the same language (drawn by scene and pass) around this scene's text."""
        scene = self.table.scene(o.scene)
        if self.config.frames == "matched":
            return scene
        infos = self.table.infos
        pool = self.frame_pool.setdefault(scene.lang, [i for i, s in enumerate(infos) if s.lang == scene.lang])
        start = random.Random(o.scene * 1_000_003 + o.pass_index).randrange(len(pool))
        for k in range(len(pool)):
            other = pool[(start + k) % len(pool)]
            if infos[other].doc_id != scene.doc_id:
                return self.table.scene(other).model_copy(update={"text": scene.text, "lang": scene.lang})
        return scene  # a language with one document: no other frame to lend

    def eot(self) -> np.ndarray:
        return np.asarray([self.encoder.ids[EOT]])

    def pieces(self, scene: SceneInfo, ids: np.ndarray) -> list[np.ndarray]:
        """The occurrence whole, or (scene_fit split) cut into pieces of at most `split_at` tokens,
        each with the occurrence's opening (scene marker, lens, header, up to <|body|>) and its
        closing marker; the body is cut by tokens. A chat turn stays whole."""
        if self.split_at is None or len(ids) <= self.split_at or self.chat.applies(scene):
            return [ids]
        at_body = np.flatnonzero(ids == self.encoder.ids[BODY])
        head = ids[: at_body[0] + 1] if len(at_body) else ids[:1]  # a plain occurrence opens with <|scene|> alone
        room = max(self.split_at - len(head) - 1, self.split_at // 4)  # a header longer than the context still gets a body
        body, tail = ids[len(head) : -1], ids[-1:]
        return [np.concatenate([head, body[start : start + room], tail]) for start in range(0, len(body), room)]

    def provenance(self, scene: SceneInfo, lens: str, pass_index: int, times_seen: int, phase: int) -> dict[str, int]:
        return {"doc": self.doc_index[scene.doc_id], "scene": scene.index, "lens": self.lens_names.index(lens),
                "pass_index": pass_index, "times_seen": times_seen, "phase": phase}


def _write_train(out: _Output, stream, limit: int | None, phases: list[str],
                 on_written: Callable[[int], None]) -> tuple[ShardWriter, Counter]:
    """The regime's stream of occurrences, each rendered under its lens, until the budget is spent;
    `on_written(tokens)` after each batch."""
    writer, seen, infos = out.writer("train", limit), Counter(), out.table.infos
    phase_index = {p: n for n, p in enumerate(phases)}
    while not writer.full:
        batch: list[Occurrence] = list(itertools.islice(stream, BATCH))
        if not batch:
            break
        lensed = [o for o in batch if out.lensed(o)]
        rendered = {id(o): out.encoded.pop(o) for o in lensed if o in out.encoded}
        fresh = [o for o in lensed if id(o) not in rendered]
        rendered.update(zip((id(o) for o in fresh), out.encoder.pieces([out.rendering(o) for o in fresh])))
        for o in batch:
            if writer.full:
                break
            if o.unit_start:
                writer.add(out.eot(), None)
            ids = rendered.get(id(o))
            lens = o.lens if ids is not None else "plain"  # a chat turn, or a generative lens without its text, reads plain
            scene = infos[o.scene]
            for piece in out.pieces(scene, out.plain(o.scene) if ids is None else ids):
                out.chat.add(writer, scene, piece, out.provenance(scene, lens, o.pass_index, seen[o.scene], phase_index[o.phase]))
            seen[o.scene] += 1
        on_written(writer.written)
    writer.close()
    return writer, seen


def _write_heldout(out: _Output, heldout: set[str]) -> ShardWriter:
    """Each held-out document once per held-out lens (plain first), never seen in training; a
    dialogue in the chat form has its plain form only."""
    writer, infos = out.writer("heldout"), out.table.infos
    held = [i for i, scene in enumerate(infos) if scene.doc_id in heldout]
    for lens in dict.fromkeys(["plain", *out.config.heldout_lenses]):
        indices = held if lens == "plain" else [i for i in held if not out.chat.applies(infos[i])]
        rendered = None if lens == "plain" else out.encoder.pieces([render(out.table.scene(i), lens) for i in indices])
        for n, i in enumerate(indices):
            scene = infos[i]
            if n == 0 or infos[indices[n - 1]].doc_id != scene.doc_id:
                writer.add(out.eot(), None)
            out.chat.add(writer, scene, out.plain(i) if rendered is None else rendered[n], out.provenance(scene, lens, 0, 0, -1))
    writer.close()
    return writer


def _warn_long_scenes(folder: Path, context: int) -> None:
    """Say how many training occurrences are longer than the context (whole, a lens header shares a
    window with the start of its text only), and what to change."""
    seg = load_segments(folder, "train")
    lengths = seg["end"] - seg["start"]
    over = lengths > context
    if over.any():
        warn(f"build: {over.mean():.0%} of scene occurrences are longer than the {context}-token context (mean {lengths.mean():.0f} "
             f"tokens, the longest {lengths.max()}): training's windows cut them, so a lens header shares a window with the start "
             "of its text only. build.scene_fit: split repeats the header in pieces that fit; or lower scenes.max_tokens, or "
             "raise model.max_seq_len")


# The build settings a trained tokenizer depends on, besides the scenes and the seed (which choose the
# held-out documents and so the training text): regimes and curricula only reorder that text.
TOKENIZER_SETTINGS = ("heldout_docs", "vocab_size", "tokenizer_sample_mb")


def build_tokenizer(table: SceneTable, config: BuildConfig, seed: int, folder: str | Path) -> Path:
    """Train, into `folder`, the tokenizer build_dataset would train for these scenes, config and
    seed; builds that agree on TOKENIZER_SETTINGS can then share it through `build.tokenizer`."""
    heldout = split_heldout(table.infos, config.heldout_docs, seed)
    doc_order = list(dict.fromkeys(s.doc_id for s in table.infos))
    units = make_units(table.infos, [d for d in doc_order if d not in heldout], whole_documents=False)
    with atomic_dir(folder) as tmp:
        _tokenizer(table, [i for u in units for i in u.scenes], config, tmp)
    return Path(folder)


def _tokenizer(table: SceneTable, indices: list[int], config: BuildConfig, folder: Path):
    """Reuse `config.tokenizer` (one tokenizer across the datasets of a study), or train one on
    up to `tokenizer_sample_mb` of the training text."""
    if config.tokenizer:
        source = Path(config.tokenizer)
        if not (source / "tokenizer.json").exists():
            raise BuildError(f"build.tokenizer: {source} holds no tokenizer.json")
        shutil.copytree(source, folder)
        hf = load_tokenizer(folder)
        missing = [t for t in SPECIAL_TOKENS if t not in hf.get_vocab()]
        if missing:
            raise BuildError(f"build.tokenizer: {source} lacks ltm's marker tokens {missing[:3]}...; build it with `ltm build`")
        return hf
    sample, size = [], 0
    for text in table.texts(indices):
        if size > config.tokenizer_sample_mb * 1e6:
            break
        sample.append(text)
        size += len(text.encode("utf-8"))
    return save_tokenizer(train_tokenizer(sample, config.vocab_size), folder)


def _generate(table: SceneTable, config: BuildConfig, indices: list[int]) -> dict[str, dict[str, str]]:
    """Texts of the generative lenses in the schedule, from the LLM endpoint (cached on disk)."""
    wanted = [step.lens for step in config.lenses if step.lens in GENERATIVE_LENSES]
    if not wanted or not (config.regime.spiral or config.regime.mixture or config.lenses[0].lens in GENERATIVE_LENSES):
        return {}
    from ltm.dataset.generate import generate_lens_texts

    scenes = [table.scene(i) for i in indices]
    return {lens: generate_lens_texts(scenes, lens, config.llm) for lens in dict.fromkeys(wanted)}


def _lens_text_ready(o: Occurrence, out: _Output) -> bool:
    return o.lens not in GENERATIVE_LENSES or out.table.infos[o.scene].scene_id in out.generated.get(o.lens, {})


def _doc_tags(infos: list[SceneInfo]) -> dict[str, dict]:
    tags: dict[str, dict] = {}
    for scene in infos:
        if scene.doc_id not in tags:
            tags[scene.doc_id] = {"lang": scene.lang, **{k: v for k, v in scene.meta.items() if isinstance(v, (str, int, float, bool))}}
    return tags


def _describe_curriculum(config: BuildConfig) -> str:
    c = config.curriculum
    base = {"shuffle": "shuffle", "tag": f"tag:{c.key}", "difficulty": f"difficulty:{c.levels}"}[c.by]
    return base + (f"+replay:{c.replay}" if c.replay else "")


def _stats(folder, infos, train_docs, heldout_docs, data_tokens, seen, lens_names, phases, table) -> dict:
    train = load_segments(folder, "train")
    tokens = train["end"] - train["start"]
    by_lens = {lens_names[k]: int(tokens[train["lens"] == k].sum()) for k in np.unique(train["lens"])}
    by_phase = {phases[k]: int(tokens[train["phase"] == k].sum()) for k in np.unique(train["phase"])}
    by_seen: Counter = Counter()
    for n in np.unique(train["times_seen"]):
        by_seen[repetition_bucket(int(n))] += int(tokens[train["times_seen"] == n].sum())
    heldout_set = set(heldout_docs)
    return {
        "train": {"documents": len(train_docs), "scenes": sum(1 for s in infos if s.doc_id not in heldout_set),
                  "scenes_read": len(seen), "occurrences": int(len(tokens)), "tokens": int(train["end"][-1]) if len(tokens) else 0,
                  "data_tokens": data_tokens, "tokens_by_lens": by_lens, "tokens_by_phase": by_phase,
                  "tokens_by_times_seen": dict(sorted(by_seen.items(), key=lambda kv: int(kv[0].split("-")[0])))},
        "heldout": {"documents": len(heldout_docs), "scenes": sum(1 for s in infos if s.doc_id in heldout_set),
                    "text_bytes": sum(len(t.encode("utf-8")) for t in table.texts([i for i, s in enumerate(infos) if s.doc_id in heldout_set]))},
    }
