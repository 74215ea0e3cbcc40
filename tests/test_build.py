"""The data engine: tokenizer, curriculum, regimes at one budget, provenance, shards, refusals."""

import hashlib
import re

import numpy as np
import pytest
from transformers import AutoTokenizer

from ltm.dataset import BuildError, SceneTable, build_dataset, load_manifest, load_split
from ltm.dataset.curriculum import group_loops
from ltm.dataset.build import split_heldout
from ltm.dataset.regimes import lens_for_pass
from ltm.dataset.reader import load_segments
from ltm.markup import SCENE_BEGIN, SCENE_END
from ltm.dataset.tokenizer import token_byte_lengths
from ltm.config import BuildConfig, LensStep, ScenesConfig
from ltm.formats import Scene, Span
from ltm.ingest import ingest_paths
from ltm.scenes import make_scenes

EN_WORDS = "the river remembers its source and the sea forgets every name it was given by the shore".split()
RU_WORDS = "река помнит исток а море забывает каждое имя которое ему давал берег и ветер".split()


def scene(doc: str, index: int, text: str, lang: str = "en", loop=(), **meta) -> Scene:
    return Scene(scene_id=f"{doc}#{index:04d}", doc_id=doc, index=index, span=Span(start=0, end=len(text)), text=text,
                 lang=lang, loop=list(loop), annotator="test", meta=meta)


def corpus_scenes(n_docs: int = 6, per_doc: int = 3, phases=("myth", "logic")) -> list[Scene]:
    """Documents of both languages, phases alternating; each scene's text is distinct."""
    out = []
    for d in range(n_docs):
        lang, words = ("en", EN_WORDS) if d % 2 == 0 else ("ru", RU_WORDS)
        for i in range(per_doc):
            text = " ".join(words[(d * 7 + i * 3 + k) % len(words)] for k in range(24)) + f" ({d}.{i})"
            out.append(scene(f"{lang}doc{d}", i, text, lang, phase=phases[d % len(phases)]))
    return out


def build(scenes, tmp_path, name="ds", seed=7, **config):
    return build_dataset(SceneTable.from_scenes(scenes), BuildConfig(**({"vocab_size": 400, "heldout_docs": 0.2} | config)), seed, tmp_path / name)


def occurrences(tmp_path, manifest, name="ds"):
    seg = load_segments(tmp_path / name, "train")
    return [(manifest.scene_id(d, s), manifest.lenses[lens], int(t)) for d, s, lens, t in zip(seg["doc"], seg["scene"], seg["lens"], seg["times_seen"])]


# --- regimes at one budget --------------------------------------------------------------------------


REGIMES = ["unique", {"corpus_epochs": 4}, {"doc_consecutive": 4}, {"chunk_epochs": {"k": 4, "size": 100}}, {"spiral": 4}]


def test_every_regime_fills_the_same_budget(tmp_path):
    scenes = corpus_scenes(10, 4)
    budget = 1000
    totals = {}
    for n, regime in enumerate(REGIMES):
        manifest = build(scenes, tmp_path, f"r{n}", regime=regime, budget_tokens=budget,
                         lenses=[LensStep(passes=2, lens="plain"), LensStep(passes=2, lens="scene")])
        totals[manifest.regime] = manifest.split_tokens("train")
        seg = load_segments(tmp_path / f"r{n}", "train")
        assert seg["end"][-1] <= budget and np.all(seg["start"][1:] >= seg["end"][:-1])
    assert set(totals.values()) == {budget}, totals


def test_repetition_index_on_a_hand_checked_corpus(tmp_path):
    # Four training documents (two held out): each of one scene, so the order is easy to follow.
    scenes = [scene(f"d{k}", 0, " ".join(EN_WORDS[k:] + EN_WORDS[:k])) for k in range(6)]
    manifest = build(scenes, tmp_path, regime={"corpus_epochs": 3}, budget_tokens=10**6 - 1, heldout_docs=0.3)
    seen = occurrences(tmp_path, manifest)
    train = manifest.stats["train"]["documents"]
    order = [s for s, _, _ in seen[:train]]
    assert sorted(order) == sorted({s for s, _, _ in seen})  # every selected scene once per epoch
    assert [t for _, _, t in seen[: 3 * train]] == [0] * train + [1] * train + [2] * train
    assert [s for s, _, _ in seen[train : 2 * train]] == order  # a verbatim copy of the corpus, same order

    consecutive = build(scenes, tmp_path, "dc", regime={"doc_consecutive": 2}, budget_tokens=10**6 - 1, heldout_docs=0.3)
    pairs = occurrences(tmp_path, consecutive, "dc")[:4]
    assert pairs[0][0] == pairs[1][0] != pairs[2][0] == pairs[3][0]
    assert [t for _, _, t in pairs] == [0, 1, 0, 1]


def test_spiral_passes_follow_the_lens_schedule(tmp_path):
    scenes = corpus_scenes(6, 2)
    schedule = [LensStep(passes=1, lens="plain"), LensStep(passes=2, lens="scene"), LensStep(passes=1, lens="critic")]
    manifest = build(scenes, tmp_path, regime={"spiral": 4}, lenses=schedule, budget_tokens=10**6)
    seg = load_segments(tmp_path / "ds", "train")
    for lens, pass_index in zip(seg["lens"], seg["pass_index"]):
        assert manifest.lenses[lens] == lens_for_pass(schedule, int(pass_index))
    assert [lens_for_pass(schedule, p) for p in range(6)] == ["plain", "scene", "scene", "critic", "plain", "scene"]
    assert set(manifest.stats["train"]["tokens_by_lens"]) == {"plain", "scene", "critic"}


def test_unique_budget_larger_than_the_data_is_refused(tmp_path):
    with pytest.raises(BuildError, match="budget_tokens=.* is more than"):
        build(corpus_scenes(), tmp_path, regime="unique", budget_tokens=10**7)
    assert not (tmp_path / "ds").exists()


def test_unknown_lens_and_empty_or_missing_phase_are_refused_before_any_work(tmp_path):
    with pytest.raises(BuildError, match="unknown lens"):
        build(corpus_scenes(), tmp_path, lenses=[LensStep(passes=1, lens="sideways")])
    with pytest.raises(BuildError, match=r"phase\(s\) \['drama'\] have no text"):
        build(corpus_scenes(), tmp_path, curriculum={"by": "tag", "phases": ["myth", "drama", "logic"]})
    with pytest.raises(BuildError, match="not in curriculum.phases"):
        build(corpus_scenes(), tmp_path, curriculum={"by": "tag", "phases": ["myth"]})
    assert not (tmp_path / "ds").exists()
    with pytest.raises(ValueError, match="unknown regime"):
        BuildConfig(regime="twice")


# --- curriculum and loops ----------------------------------------------------------------------------


def test_tag_curriculum_reads_phases_in_order_and_replays_earlier_ones(tmp_path):
    scenes = corpus_scenes(12, 2)
    manifest = build(scenes, tmp_path, curriculum={"by": "tag", "phases": ["logic", "myth"]})
    seg = load_segments(tmp_path / "ds", "train")
    assert list(seg["phase"]) == sorted(seg["phase"]) and manifest.phases == ["logic", "myth"]
    tag = {s.scene_id: s.meta["phase"] for s in scenes}
    replayed = build(scenes, tmp_path, "rp", curriculum={"by": "tag", "phases": ["logic", "myth"], "replay": 0.5})
    seg = load_segments(tmp_path / "rp", "train")
    in_myth = [replayed.scene_id(d, s) for d, s, p in zip(seg["doc"], seg["scene"], seg["phase"]) if replayed.phases[p] == "myth"]
    assert any(tag[s] == "logic" for s in in_myth)  # logic scenes re-read inside the myth phase
    assert max(seg["times_seen"]) >= 1


def test_difficulty_curriculum_goes_from_easy_to_hard(tmp_path):
    easy = [scene(f"e{k}", 0, "the cat sat. the cat sat. the cat sat on the mat. " * 3) for k in range(4)]
    hard = [scene(f"h{k}", 0, "Epistemological indeterminacy notwithstanding, incommensurable paradigms "
                  f"necessitate methodological pluralism {k} and heterogeneous justificatory architectures.") for k in range(4)]
    manifest = build(easy + hard, tmp_path, curriculum={"by": "difficulty", "levels": 2}, heldout_docs=0.2)
    seg = load_segments(tmp_path / "ds", "train")
    assert manifest.phases == ["level-1", "level-2"]
    phase_of = {manifest.docs[d]: manifest.phases[p] for d, p in zip(seg["doc"], seg["phase"])}
    # Levels are equal-count bins of the difficulty ranks: hard texts are never in the easy level.
    assert {d for d, p in phase_of.items() if p == "level-1"} <= {d for d in phase_of if d.startswith("e")}
    assert all(p == "level-2" for d, p in phase_of.items() if d.startswith("h"))
    assert list(seg["phase"]) == sorted(seg["phase"])
    # hardest_first, the control: the same levels, read hard to easy.
    reverse = build(easy + hard, tmp_path, "rev", curriculum={"by": "difficulty", "levels": 2, "hardest_first": True}, heldout_docs=0.2)
    seg = load_segments(tmp_path / "rev", "train")
    assert reverse.phases == ["level-2", "level-1"]
    read = [reverse.docs[d] for d in seg["doc"]]
    assert read[0].startswith("h") and read[-1].startswith("e")


def test_loops_are_grouped_and_never_split(tmp_path):
    steps = [("claim",), (), ("doubt",), ("new direction",), (), ("doubt",), ("inversion",), ("new direction",)]
    doc_scenes = [scene("a", i, f"scene {i} " + " ".join(EN_WORDS), loop=s) for i, s in enumerate(steps)]
    infos = SceneTable.from_scenes(doc_scenes).infos
    assert group_loops(infos, list(range(8))) == [[0, 1, 2, 3], [4], [5, 6, 7]]
    others = [scene(f"o{k}", 0, " ".join(RU_WORDS) + str(k), "ru") for k in range(4)] + [scene("b", 0, "another " * 30)]
    manifest = build(doc_scenes + others, tmp_path, heldout_docs=0.01)
    order = [manifest.scene_id(d, s) for d, s in zip(*(load_segments(tmp_path / "ds", "train")[k] for k in ("doc", "scene")))]
    if "a#0000" in order:
        start = order.index("a#0000")
        assert order[start : start + 4] == ["a#0000", "a#0001", "a#0002", "a#0003"]
        start = order.index("a#0005")
        assert order[start : start + 3] == ["a#0005", "a#0006", "a#0007"]


# --- tokenizer, shards, determinism ------------------------------------------------------------------


def test_same_seed_gives_identical_shards_other_seed_other_order(tmp_path):
    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}

    scenes = corpus_scenes(10, 3)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        build(scenes, tmp_path, name, seed=seed, regime={"spiral": 3}, lenses=[LensStep(passes=1, lens="plain"), LensStep(passes=1, lens="questions")],
              budget_tokens=3000)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["train_000.bin"] != digest(tmp_path / "c")["train_000.bin"]


def test_tokenizer_round_trips_and_markers_never_come_from_text(tmp_path):
    build(corpus_scenes(), tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "ds" / "tokenizer"))
    lengths = token_byte_lengths(tokenizer)
    for text in ["Помним ли мы прошлое? Ёлка, «кавычки» — тире.", "Can a thing be measured? \t spaces\nnew line", "日本語 😀"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text and lengths[ids].sum() == len(text.encode("utf-8"))
    assert "<|assistant|>" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    trick = [scene(f"t{k}", 0, f"A text that spells out {SCENE_BEGIN} and {SCENE_END} in words, number {k}.") for k in range(4)]
    manifest = build(trick, tmp_path, "trick", heldout_docs=0.3)
    ids = load_split(tmp_path / "trick", manifest, "train")
    begin = tokenizer.convert_tokens_to_ids(SCENE_BEGIN)
    seg = load_segments(tmp_path / "trick", "train")
    assert [int((ids[s:e] == begin).sum()) for s, e in zip(seg["start"], seg["end"])] == [1] * len(seg["start"])


def test_fast_encoder_gives_the_hf_tokenizer_ids_and_a_tokenizer_can_be_reused(tmp_path):
    from ltm.dataset.fast_encoder import FastEncoder

    build(corpus_scenes(), tmp_path)
    folder = tmp_path / "ds" / "tokenizer"
    hf = AutoTokenizer.from_pretrained(str(folder))
    texts = ["Помним ли мы прошлое?  Ёлка — «ёж»!\n\n  tabs\there", "I'll say it's 42, isn't it?   ", "日本語 😀 mixed Русский and English", ""]
    assert [ids.tolist() for ids in FastEncoder(folder / "tokenizer.json").encode(texts)] == [hf.encode(t, add_special_tokens=False) for t in texts]
    again = build(corpus_scenes(), tmp_path, "again", tokenizer=str(folder), vocab_size=999)
    assert again.tokenizer_sha256 == load_manifest(tmp_path / "ds").tokenizer_sha256 and again.vocab_size == len(hf)
    with pytest.raises(BuildError, match="holds no tokenizer.json"):
        build(corpus_scenes(), tmp_path, "none", tokenizer=str(tmp_path))


def test_manifest_maps_token_ranges_to_scenes_and_splits_hold_out_documents(tmp_path, corpus):
    scenes = make_scenes(ingest_paths([corpus]).documents, ScenesConfig(min_tokens=10, max_tokens=60), [])
    manifest = build(scenes, tmp_path, shard_tokens=1024)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "ds" / "tokenizer"))
    by_id = {s.scene_id: s for s in scenes}
    for split in ("train", "heldout"):
        tokens = load_split(tmp_path / "ds", manifest, split)
        seg = load_segments(tmp_path / "ds", split)
        for start, end, doc, index in zip(seg["start"], seg["end"], seg["doc"], seg["scene"]):
            assert tokenizer.decode(tokens[start + 1 : end - 1].tolist()) == by_id[manifest.scene_id(doc, index)].text
    assert len([s for s in manifest.shards if s.split == "train"]) > 1  # shard_tokens cut the split
    assert all(s.tokens <= 1024 for s in manifest.shards)
    train_docs = {manifest.docs[d] for d in load_segments(tmp_path / "ds", "train")["doc"]}
    assert not train_docs & set(manifest.heldout_docs)
    assert {d.split("_")[0] for d in manifest.heldout_docs} == {"en", "ru"}
    assert load_manifest(tmp_path / "ds") == manifest and manifest.dtype == "uint16"


def test_split_heldout_is_per_language():
    infos = SceneTable.from_scenes(corpus_scenes(6, 1)).infos
    held = split_heldout(infos, 0.01, seed=1)
    assert sorted(d[:2] for d in held) == ["en", "ru"]


def test_split_tags_and_a_fixed_list_decide_before_the_seed():
    scenes = corpus_scenes(6, 1) + [scene("forced_out", 0, "held text", split="heldout"), scene("forced_in", 0, "train text", split="train")]
    infos = SceneTable.from_scenes(scenes).infos
    for seed in range(5):
        held = split_heldout(infos, 0.5, seed=seed)
        assert "forced_out" in held and "forced_in" not in held
    # A fixed list holds out exactly those (and the tagged ones), whatever the seed.
    assert split_heldout(infos, 0.5, seed=1, fixed=["endoc0"]) == split_heldout(infos, 0.5, seed=2, fixed=["endoc0"]) == {"endoc0", "forced_out"}
    with pytest.raises(BuildError, match="nodoc"):
        split_heldout(infos, 0.5, seed=1, fixed=["nodoc"])


def test_heldout_seed_keeps_the_heldout_documents_when_the_seed_changes(tmp_path):
    scenes = corpus_scenes(12, 1)
    held = {seed: build(scenes, tmp_path, f"s{seed}", seed=seed, heldout_docs=0.3, heldout_seed=99).heldout_docs for seed in (1, 2)}
    assert held[1] == held[2]
    other = {seed: set(build(scenes, tmp_path, f"t{seed}", seed=seed, heldout_docs=0.3).heldout_docs) for seed in range(1, 5)}
    assert len({frozenset(h) for h in other.values()}) > 1  # without it the seed draws them


def test_spiral_with_a_generative_lens_reads_the_model_text(tmp_path):
    from openai_stub import StubServer, completion, scene_of

    def reply(body, headers):
        return 200, completion("A COMMENTARY on " + scene_of(body).split()[0])

    with StubServer(reply) as stub:
        scenes = corpus_scenes(6, 2)
        manifest = build(scenes, tmp_path, regime={"spiral": 2}, budget_tokens=10**6,
                         lenses=[LensStep(passes=1, lens="plain"), LensStep(passes=1, lens="commentary")],
                         llm={"base_url": stub.base_url, "model": "stub", "api_key_env": None, "cache_dir": str(tmp_path / "cache")})
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "ds" / "tokenizer"))
    ids = load_split(tmp_path / "ds", manifest, "train")
    seg = load_segments(tmp_path / "ds", "train")
    commentary = [tokenizer.decode(ids[s:e].tolist()) for s, e, lens in zip(seg["start"], seg["end"], seg["lens"]) if manifest.lenses[lens] == "commentary"]
    assert commentary and all("A COMMENTARY on" in text for text in commentary)
    assert manifest.stats["train"]["tokens_by_lens"]["commentary"] > 0


@pytest.mark.parametrize("regime", ["unique", {"corpus_epochs": 2}, {"doc_consecutive": 2}, {"chunk_epochs": {"k": 2, "size": 100}},
                                    {"spiral": 2}], ids=str)
def test_a_budget_below_the_data_takes_every_phase_share_under_a_tag_curriculum(tmp_path, regime, capsys):
    # Three phases of unequal size; the budget is half the data. Each phase must bring its share of
    # the budget (its share of the data): within 2% under unique; a repeating regime selects B/R
    # tokens of whole units, coarser here, so within 5%. No phase is left out.
    scenes = corpus_scenes(240, 2, phases=("myth", "myth", "myth", "drama", "drama", "logic"))
    curriculum = {"by": "tag", "phases": ["myth", "drama", "logic"]}
    full = build(scenes, tmp_path, "full", regime="unique", curriculum=curriculum)
    data = full.stats["train"]["tokens_by_phase"]
    budget = sum(data.values()) // 2
    capsys.readouterr()
    half = build(scenes, tmp_path, "half", regime=regime, curriculum=curriculum, budget_tokens=budget,
                 lenses=[LensStep(passes=2, lens="plain"), LensStep(passes=2, lens="scene")])
    got = half.stats["train"]["tokens_by_phase"]  # scene tokens; the end-of-text tokens between units have no phase
    assert half.split_tokens("train") == budget
    for phase, tokens in data.items():
        share = tokens / sum(data.values())
        tolerance = 0.02 if regime == "unique" else 0.05
        assert abs(got.get(phase, 0) / sum(got.values()) - share) <= tolerance * share, (phase, got, data)
    assert "tokens by phase: myth" in capsys.readouterr().err


# --- mixture: a repeated target in a unique background ------------------------------------------------


def fact_scenes(n: int = 4) -> list[Scene]:
    """Short target documents, tagged kind=fact, in both languages."""
    out = []
    for d in range(n):
        lang, words = ("en", EN_WORDS) if d % 2 == 0 else ("ru", RU_WORDS)
        text = " ".join(words[(d * 5 + k) % len(words)] for k in range(6)) + f" [fact {d}]"
        out.append(scene(f"fact{d}", 0, text, lang, phase="myth", kind="fact"))
    return out


def test_mixture_reads_the_background_once_and_the_target_pass_after_pass_at_its_share(tmp_path):
    scenes = corpus_scenes(20, 4) + fact_scenes()
    budget, share = 3000, 0.4
    schedule = [LensStep(passes=1, lens="plain"), LensStep(passes=1, lens="critic")]  # interleaved: pass i, lens i mod 2
    manifest = build(scenes, tmp_path, regime={"mixture": {"share": share, "target": {"kind": "fact"}}}, lenses=schedule,
                     budget_tokens=budget, heldout=["endoc0", "rudoc1"])
    seg = load_segments(tmp_path / "ds", "train")
    assert manifest.split_tokens("train") == budget
    ids = [manifest.scene_id(d, s) for d, s in zip(seg["doc"], seg["scene"])]
    is_target = np.array([i.startswith("fact") for i in ids])
    tokens = seg["end"] - seg["start"]
    assert abs(tokens[is_target].sum() / budget - share) < 0.05
    background = [i for i, t in zip(ids, is_target) if not t]
    assert len(background) == len(set(background)), "the background is read once"
    assert all(manifest.lenses[k] == "plain" for k, t in zip(seg["lens"], is_target) if not t)
    passes = seg["pass_index"][is_target]
    assert passes.max() >= 3 and all(manifest.lenses[k] == lens_for_pass(schedule, int(p))
                                     for k, p in zip(seg["lens"][is_target], passes))
    # Woven through: the target is read in the first and in the last fifth of the stream alike.
    where = np.flatnonzero(is_target) / len(ids)
    assert where.min() < 0.2 and where.max() > 0.8


def test_mixture_target_is_the_same_text_whatever_the_lenses(tmp_path):
    scenes = corpus_scenes(20, 4)
    read = {}
    for name, schedule in {"verbatim": [LensStep(passes=1, lens="plain")],
                           "lenses": [LensStep(passes=1, lens=lens) for lens in ("plain", "scene", "critic", "child")]}.items():
        manifest = build(scenes, tmp_path, name, regime={"mixture": {"share": 0.4, "repeats": 4}}, lenses=schedule,
                         budget_tokens=2000, heldout=["endoc0", "rudoc1"])
        seg = load_segments(tmp_path / name, "train")
        read[name] = {manifest.scene_id(d, s) for d, s in zip(seg["doc"], seg["scene"])}
        repeated = {manifest.scene_id(d, s) for d, s, t in zip(seg["doc"], seg["scene"], seg["times_seen"]) if t > 0}
        assert repeated and {i[:2] for i in repeated} == {"en", "ru"}, "the target is stratified by language"
    assert read["verbatim"] == read["lenses"]


def test_mixture_refuses_a_background_smaller_than_its_part_and_an_empty_target(tmp_path):
    with pytest.raises(BuildError, match="the background has"):
        build(corpus_scenes(6, 2) + fact_scenes(), tmp_path, regime={"mixture": {"share": 0.2, "target": {"kind": "fact"}}},
              budget_tokens=10**5)
    with pytest.raises(BuildError, match="no training document has these tags"):
        build(corpus_scenes(6, 2), tmp_path, regime={"mixture": {"share": 0.2, "target": {"kind": "fact"}}}, budget_tokens=200)
    with pytest.raises(ValueError, match="either target"):
        BuildConfig(regime={"mixture": {"share": 0.2}})


def test_shuffled_frames_put_another_documents_header_around_the_passage(tmp_path):
    scenes = corpus_scenes(6, 2)
    for s in scenes:
        s.vector.destination = f"goal{s.doc_id}x{s.index}"
    texts = {}
    for frames in ("matched", "shuffled"):
        manifest = build(scenes, tmp_path, frames, regime={"spiral": 2}, budget_tokens=2000, frames=frames,
                         lenses=[LensStep(passes=1, lens="scene")])
        tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / frames / "tokenizer"))
        ids = load_split(tmp_path / frames, manifest, "train")
        seg = load_segments(tmp_path / frames, "train")
        texts[frames] = [(manifest.docs[d], int(s), tokenizer.decode(ids[a:b].tolist()).replace(" ", ""))
                         for a, b, d, s in zip(seg["start"], seg["end"], seg["doc"], seg["scene"])][:-1]  # the budget cuts the last
    for doc, index, text in texts["matched"]:
        assert f"goal{doc}x{index}" in text
    for doc, index, text in texts["shuffled"]:
        assert f"goal{doc}x" not in text and "goal" in text, "the header is another document's"
        assert text.count("(") == 1, "and the passage is the scene's own"


# --- scenes longer than the context -----------------------------------------------------------------


def test_scenes_longer_than_the_context_are_warned_about_and_split_repeats_the_lens_header(tmp_path, capsys):
    # Scenes of ~60 tokens under a 32-token context: whole, the header shares a window with the
    # start of the text only; split, each piece fits the context and opens with the header.
    scenes = [scene(f"d{k}", i, " ".join(EN_WORDS[(k + i + j) % len(EN_WORDS)] for j in range(60)))
              for k in range(6) for i in range(2)]
    lenses = [LensStep(passes=1, lens="scene")]
    whole = build_dataset(SceneTable.from_scenes(scenes), BuildConfig(vocab_size=400, heldout_docs=0.2, lenses=lenses, regime={"spiral": 1}),
                          7, tmp_path / "whole", context=32)
    err = capsys.readouterr().err.replace("\n", " ")
    assert re.search(r"\d+% of scene occurrences", err) and "longer than the 32-token context" in err and "build.scene_fit: split" in err
    split = build_dataset(SceneTable.from_scenes(scenes), BuildConfig(vocab_size=400, heldout_docs=0.2, lenses=lenses, regime={"spiral": 1},
                                                                       scene_fit="split"), 7, tmp_path / "split", context=32)
    assert "longer than the" not in capsys.readouterr().err
    seg = load_segments(tmp_path / "split", "train")
    lengths = seg["end"] - seg["start"]
    assert lengths.max() <= 32 and len(seg["end"]) > 2 * whole.stats["train"]["occurrences"]
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "split" / "tokenizer"))
    ids = load_split(tmp_path / "split", split, "train")
    header = tokenizer.convert_tokens_to_ids("<|header|>")
    assert all(header in ids[s:e].tolist() for s, e in zip(seg["start"], seg["end"]))
    # every token of the text is still there, once per pass: the pieces' bodies joined are the scene
    body = tokenizer.convert_tokens_to_ids("<|body|>")
    first = [ids[s:e].tolist() for s, e, d, n in zip(seg["start"], seg["end"], seg["doc"], seg["scene"])
             if (d, n) == (seg["doc"][0], seg["scene"][0])]
    text = tokenizer.decode([t for piece in first for t in piece[piece.index(body) + 1 : -1]])
    wanted = next(s for s in scenes if s.scene_id == split.scene_id(seg["doc"][0], seg["scene"][0]))
    assert text.split() == wanted.text.split()
