"""Scene quality against ltm's labelled set (bench/data/scenes_labelled/), and on a whole scenes file.

    python bench/scenes_quality.py [--set dev|heldout] [--scenes SCENES.jsonl] [--errors]

The labelled set: passages of the real corpora (../shared/corpora) and of the sample corpus
(examples/corpus), stored as document offsets and hashes, never as text (see its README). For each
half (dev: the rules were tuned on it; heldout: written after the rules were frozen) it reports:

- boundary precision, recall and F1, with a tolerance of one sentence, for ltm's segmenter and two
  baselines: TextTiling (Hearst 1997, pseudo-sentences of 20 words, blocks of 10, cuts snapped to
  paragraph starts) and fixed length (a cut at the first sentence start after every 180 words).
  Scenes follow the text's structure, so a labelled scene may be longer than `max_tokens`; the
  cuts a segmenter must make inside it (ceil(words / max_tokens) - 1) are not counted against it.
- speaker precision, recall and F1: the speakers named in each labelled scene against the
  annotator's `speaker` roles; two names match when they share a word (case and ё ignored).
- function-word role names: roles of any kind named by a function word (the lexicons' list).
- tension-level agreement (low, medium, high) and each side's share of `high`.
- question-kind accuracy over the labelled questions the annotator finds (and that recall).
- for the labelled cross-document reference pairs: the share judged related, above each score.

With --llm CONFIG the same annotation figures are measured for the LLM annotator of that run
config's `scenes.llm` endpoint (any OpenAI-compatible server), next to the heuristic ones.

With --scenes it also checks a whole SCENES.jsonl (e.g. the real corpus): scenes holding a chapter
heading after their first line of text, the tension levels' shares, scenes cut inside a sentence, scenes
with speakers, function-word role names, vector hints and cross-document links by score.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED_CORPORA, emit  # noqa: E402

from ltm.config import ScenesConfig  # noqa: E402
from ltm.ingest import ingest_paths  # noqa: E402
from ltm.scenes.annotate import annotate  # noqa: E402
from ltm.scenes.lexicon import builtin_lexicon  # noqa: E402
from ltm.scenes.segment import segment  # noqa: E402
from ltm.scenes.sentences import rough_sentence_spans, sentence_spans  # noqa: E402
from ltm.scenes.tiling import WORD, cutoff, depth_scores, gap_similarities  # noqa: E402

LABELLED = Path(__file__).resolve().parent / "data" / "scenes_labelled"
BENCH = "scenes_quality"
PSEUDO_SENTENCE, BLOCK = 20, 10  # Hearst's w and k
FIXED_WORDS = 180
LINK_CUTS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]*)*")
_CHAPTER_LINE = re.compile(
    r"(?:[IVXLC]+\.?|(?:глава|часть|книга|песнь|chapter|book|part|canto)\b[^.!?]{0,60}\.?)", re.IGNORECASE)


# --- the labelled set -------------------------------------------------------------------------------


def load_set(name: str) -> list[dict]:
    path = LABELLED / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@lru_cache(maxsize=None)
def document(corpus: str, path: str):
    """The ingested document a passage points into (the first one its file yields)."""
    root = SHARED_CORPORA if corpus == "shared" else ROOT
    result = ingest_paths([root / path])
    if not result.documents:
        problem = result.errors[0].problem if result.errors else "no document"
        raise FileNotFoundError(f"{root / path}: {problem}")
    return result.documents[0]


def passages_with_documents(passages: list[dict]) -> list[tuple[dict, object]]:
    """Each passage with its document; a passage whose file is missing or changed is reported and
    left out, so a stale reference never scores against the wrong text."""
    found = []
    for passage in passages:
        source = passage["source"]
        try:
            doc = document(source["corpus"], source["path"])
        except FileNotFoundError as exc:
            print(f"skipped {passage['id']}: {exc}", file=sys.stderr)
            continue
        if doc.sha256 != passage["doc_sha256"]:
            print(f"skipped {passage['id']}: {source['path']} is not the text that was labelled (sha256 differs)", file=sys.stderr)
            continue
        found.append((passage, doc))
    return found


# --- baselines --------------------------------------------------------------------------------------


def texttiling_spans(doc) -> list[tuple[int, int]]:
    """Hearst's TextTiling without length limits: similarity of the BLOCK pseudo-sentences either
    side of each pseudo-sentence gap, depth scores, cutoff mean - std/2, each cut moved to the
    nearest paragraph start. Function words are kept: on the dev half, leaving them out (as Hearst
    left out stop words) made this baseline weaker (F1 0.41 against 0.48), and a baseline should
    be the stronger of the two."""
    text = doc.text
    matches = list(WORD.finditer(text.lower()))
    words = [m.group()[:5] for m in matches]
    gaps = np.arange(PSEUDO_SENTENCE, len(words), PSEUDO_SENTENCE)
    depths = depth_scores(gap_similarities(words, gaps, PSEUDO_SENTENCE * BLOCK).tolist())
    limit = cutoff(depths)
    paragraph_starts = [m.start() for m in _PARAGRAPH.finditer(text) if text[m.start() : m.end()].strip()]
    cuts = set()
    for gap, depth in zip(gaps, depths):
        if depth >= limit and depth > 0:
            position = matches[gap].start()
            i = bisect.bisect_left(paragraph_starts, position)
            near = [p for p in paragraph_starts[max(0, i - 1) : i + 1]]
            cuts.add(min(near, key=lambda p: abs(p - position)))
    return _spans_from_starts(text, sorted(cuts | {paragraph_starts[0]} if paragraph_starts else cuts))


def fixed_length_spans(doc) -> list[tuple[int, int]]:
    """A cut at the first sentence start after every FIXED_WORDS words."""
    text, starts, words = doc.text, [], 0
    for s, e in rough_sentence_spans(text):
        if not starts or words >= FIXED_WORDS:
            starts.append(s)
            words = 0
        words += len(text[s:e].split())
    return _spans_from_starts(text, starts)


def _spans_from_starts(text: str, starts: list[int]) -> list[tuple[int, int]]:
    ends = starts[1:] + [len(text)]
    return [(s, s + len(text[s:e].rstrip())) for s, e in zip(starts, ends)]


SEGMENTERS = {
    "ltm": lambda doc, config: segment(doc, config.min_tokens, config.max_tokens),
    "texttiling": lambda doc, config: texttiling_spans(doc),
    "fixed": lambda doc, config: fixed_length_spans(doc),
}


# --- boundaries -------------------------------------------------------------------------------------


class Tally:
    """True positives, false positives and false negatives."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _sentence_starts(doc, start: int, end: int) -> list[int]:
    """Sentence starts (razdel) and paragraph starts from one paragraph before `start` to one after
    `end`: the units the one-sentence tolerance counts in."""
    text = doc.text
    lo, hi = start, end
    for _ in range(2):
        found = text.rfind("\n\n", 0, lo)
        lo = max(found, 0)
        found = text.find("\n\n", hi + 2 if hi < len(text) else hi)
        hi = len(text) if found < 0 else found
    starts = {s for s, _ in sentence_spans(text, lo, hi)}
    starts |= {m.start() for m in _PARAGRAPH.finditer(text, lo, hi)}
    return sorted(starts)


def score_boundaries(passage: dict, doc, predicted: list[tuple[int, int]], max_tokens: int, tally: Tally) -> dict:
    """Add one passage's boundaries to `tally`; return its misses for --errors."""
    text = doc.text
    sentences = _sentence_starts(doc, passage["start"], passage["end"])

    def index(offset: int) -> int:
        return bisect.bisect_right(sentences, offset) - 1

    gold = [s["start"] for s in passage["scenes"]]
    following = text[passage["end"] :].lstrip()
    if following:
        gold.append(len(text) - len(following))  # the passage ends where the next scene starts
    gold = [g for g in gold if text[:g].strip()]  # the document's own start is no boundary
    lo, hi = sentences[0], sentences[-1]
    pred = sorted({s for s, _ in predicted if lo <= s <= hi and text[:s].strip()})
    matched_pred: set[int] = set()
    missed = []
    for g in gold:
        candidates = [p for p in pred if p not in matched_pred and abs(index(p) - index(g)) <= 1]
        if candidates:
            matched_pred.add(min(candidates, key=lambda p: abs(p - g)))
            tally.tp += 1
        else:
            tally.fn += 1
            missed.append(g)
    extra = [p for p in pred if p not in matched_pred and passage["start"] <= p < passage["end"]]
    # Cuts a segmenter must make inside a labelled scene longer than max_tokens are not errors.
    excused = {i: max(0, math.ceil(s["words"] / max_tokens) - 1) for i, s in enumerate(passage["scenes"])}
    wrong = []
    for p in extra:
        i = max(j for j, s in enumerate(passage["scenes"]) if s["start"] <= p)
        if excused[i] > 0:
            excused[i] -= 1
        else:
            wrong.append(p)
    tally.fp += len(wrong)
    return {"missed": missed, "extra": wrong}


# --- annotations ------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def function_words(lang: str) -> frozenset[str]:
    """The lexicons' function words, read from the data files so that any version of the annotator
    is checked against the same list."""
    name = f"{lang}.yaml" if lang in ("ru", "en") else "en.yaml"
    data = yaml.safe_load((ROOT / "src" / "ltm" / "data" / "lexicons" / name).read_text(encoding="utf-8"))
    return frozenset(w.lower() for w in data.get("function_words") or [])


def _name_words(name: str) -> set[str]:
    return set(re.findall(r"\w+", name.lower().replace("ё", "е")))


def score_speakers(gold: list[str], predicted: list[str], tally: Tally) -> None:
    """One-to-one matching; a second predicted name for a speaker already matched is a false positive."""
    unmatched = list(gold)
    for name in predicted:
        hit = next((g for g in unmatched if _name_words(g) & _name_words(name)), None)
        if hit is None:
            tally.fp += 1
        else:
            unmatched.remove(hit)
            tally.tp += 1
    tally.fn += len(unmatched)


def _question_marks(scene_text: str, questions) -> dict[int, str]:
    """The offset (in the scene) of each predicted question's mark, with its kind."""
    found, cursor = {}, 0
    for q in questions:
        body = q.text[:-1].rstrip() if q.text.endswith("?") else q.text
        at = scene_text.find(body, cursor) if body else -1
        if at < 0:
            continue
        mark = scene_text.find("?", at + len(body))
        if mark >= 0:
            found[mark] = q.kind
            cursor = at + len(body)
    return found


def heuristic(items: list[tuple[str, str]]) -> list[dict]:
    """The default annotator over (text, lang) items."""
    return [annotate(text, builtin_lexicon(lang)) for text, lang in items]


def llm_annotator(config_path: Path):
    """The LLM annotator of a run config's `scenes.llm` endpoint; a scene it cannot annotate keeps
    the heuristic annotation (as in `ltm scenes`) and is counted in `llm_fallbacks`."""
    from ltm.config import load_config
    from ltm.formats import Scene, Span
    from ltm.scenes.llm_annotate import annotate_with_llm

    llm = load_config(config_path).scenes.llm
    counts = Counter()

    def run(items: list[tuple[str, str]]) -> list[dict]:
        scenes = [Scene(scene_id=f"gold#{i:04d}", doc_id="gold", index=i, span=Span(start=0, end=len(text)), text=text,
                        lang=lang, **annotate(text, builtin_lexicon(lang))) for i, (text, lang) in enumerate(items)]
        done = annotate_with_llm(scenes, llm)
        counts["fallbacks"] += sum("llm_error" in scene.meta for scene in done)
        return [dict(scene) for scene in done]

    run.name, run.counts = f"llm:{llm.model}", counts
    return run


def score_annotations(pairs: list[tuple[dict, object]], show_errors: bool, annotator=heuristic) -> dict[str, float]:
    speakers, levels, kinds = Tally(), Counter(), Counter()
    bad_roles, gold_high, pred_high, scenes = Counter(), 0, 0, 0
    items = [(doc.text[s["start"] : s["end"]], doc.lang) for passage, doc in pairs for s in passage["scenes"]]
    annotations = iter(annotator(items))
    for passage, doc in pairs:
        for scene in passage["scenes"]:
            text = doc.text[scene["start"] : scene["end"]]
            got = next(annotations)
            scenes += 1
            predicted = [r.name for r in got["roles"] if r.function == "speaker"]
            before = (speakers.tp, speakers.fp, speakers.fn)
            score_speakers(scene["speakers"], predicted, speakers)
            for role in got["roles"]:
                if role.name.lower() in function_words(doc.lang):
                    bad_roles[role.name] += 1
            level = got["tension"].level
            levels["right"] += level == scene["tension"]
            gold_high += scene["tension"] == "high"
            pred_high += level == "high"
            marks = _question_marks(text, got["questions"])
            wrong_kinds = []
            for q in scene["questions"]:
                kind = marks.get(q["at"] - scene["start"])
                if kind is not None:
                    kinds["found"] += 1
                    kinds["right"] += kind == q["kind"]
                    if kind != q["kind"]:
                        wrong_kinds.append((text[max(0, q["at"] - scene["start"] - 60) : q["at"] - scene["start"] + 1], q["kind"]))
                kinds["gold"] += 1
            if show_errors and ((speakers.tp, speakers.fp, speakers.fn) != (before[0] + len(scene["speakers"]), before[1], before[2])
                                or level != scene["tension"] or wrong_kinds):
                print(json.dumps({"passage": passage["id"], "at": scene["start"], "speakers": [scene["speakers"], predicted],
                                  "tension": [scene["tension"], level, got["tension"].poles], "kinds": wrong_kinds},
                                 ensure_ascii=False), file=sys.stderr)
    p, r, f = speakers.prf()
    return {"speaker_precision": p, "speaker_recall": r, "speaker_f1": f,
            "function_word_role_names": sum(bad_roles.values()),
            "tension_level_agreement": levels["right"] / max(scenes, 1),
            "high_share_labelled": gold_high / max(scenes, 1), "high_share_annotator": pred_high / max(scenes, 1),
            "question_kind_accuracy": kinds["right"] / max(kinds["found"], 1),
            "question_recall": kinds["found"] / max(kinds["gold"], 1)}


# --- the whole report -------------------------------------------------------------------------------


def score_set(name: str, show_errors: bool, label: dict, llm_config: Path | None = None) -> None:
    pairs = passages_with_documents(load_set(name))
    config = ScenesConfig()
    n_scenes = sum(len(p["scenes"]) for p, _ in pairs)
    extra = {"set": name, "passages": len(pairs), "scenes": n_scenes, **label}
    for segmenter, cut in SEGMENTERS.items():
        tally = Tally()
        for passage, doc in pairs:
            misses = score_boundaries(passage, doc, cut(doc, config), config.max_tokens, tally)
            if show_errors and segmenter == "ltm" and (misses["missed"] or misses["extra"]):
                print(json.dumps({"passage": passage["id"], **{k: [doc.text[o : o + 50] for o in v] for k, v in misses.items()}},
                                 ensure_ascii=False), file=sys.stderr)
        p, r, f = tally.prf()
        for metric, value in (("precision", p), ("recall", r), ("f1", f)):
            emit(BENCH, f"boundary_{metric}_{segmenter}", value, "fraction", **extra)
    annotators = [(heuristic, {"annotator": "heuristic"})]
    if llm_config is not None:
        run = llm_annotator(llm_config)
        annotators.append((run, {"annotator": run.name}))
    for annotator, tag in annotators:
        for metric, value in score_annotations(pairs, show_errors, annotator).items():
            unit = "count" if metric == "function_word_role_names" else "fraction"
            emit(BENCH, metric, value, unit, **extra, **tag)
        if annotator is not heuristic:
            emit(BENCH, "llm_fallbacks", annotator.counts["fallbacks"], "count", **extra, **tag)


def buried_headings(text: str) -> list[str]:
    """Chapter heading lines ("V", "Глава третья", "BOOK II.") that come after the scene's first
    line of text; headings stacked at its top ("Часть первая / Книга первая / I") are its title."""
    lines = [x.strip() for x in text.split("\n") if x.strip()]
    first_text = next((i for i, x in enumerate(lines) if len(x.split()) > 12), len(lines))
    return [x for x in lines[first_text + 1 :] if len(x) <= 70 and _CHAPTER_LINE.fullmatch(x)]


def score_links(label: dict) -> None:
    """How often a cross-document reference is related to its scene, by the score it had, on the
    labelled pairs (links.jsonl: pairs sampled from the references `link` made at the commit named
    in the README, six score bands, eight pairs each; scores as they were then)."""
    path = LABELLED / "links.jsonl"
    if not path.exists():
        return
    pairs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for cut in LINK_CUTS:
        above = [p for p in pairs if p["score"] >= cut]
        if above:
            emit(BENCH, f"cross_document_links_related_at_score_{cut}", sum(p["related"] for p in above) / len(above),
                 "fraction", pairs=len(above), **label)


def check_scenes_file(path: Path, label: dict) -> None:
    """Figures over a whole SCENES.jsonl (any annotator, any version of the format)."""
    counts, levels, hints, roles = Counter(), Counter(), Counter(), Counter()
    cross_scores = []
    for line in path.open(encoding="utf-8"):
        scene = json.loads(line)
        counts["scenes"] += 1
        text = scene["text"]
        counts["heading_after_first_line"] += bool(buried_headings(text))
        counts["ends_inside_sentence"] += not re.search(r"[.!?…:;»\"”)\]*_`|-]\s*$", text) and len(text.split()) > 3
        levels[scene["tension"]["level"]] += 1
        hints[scene["vector"]["hint"]] += 1
        counts["with_speakers"] += any(r.get("function") == "speaker" for r in scene["roles"])
        for role in scene["roles"]:
            roles["function_word"] += role["name"].lower() in function_words(scene["lang"])
        doc = scene["doc_id"]
        cross_scores += [ref["score"] for ref in scene["references"] if ref["scene_id"].rsplit("#", 1)[0] != doc]
    n = max(counts["scenes"], 1)
    extra = {"scenes_file": path.name, "scenes": counts["scenes"], **label}
    emit(BENCH, "corpus_scenes_with_heading_after_first_line", counts["heading_after_first_line"], "count", target=0, **extra)
    for level in ("low", "medium", "high"):
        emit(BENCH, f"corpus_tension_{level}_share", levels[level] / n, "fraction", **extra)
    emit(BENCH, "corpus_scenes_ending_inside_a_sentence", counts["ends_inside_sentence"] / n, "fraction", **extra)
    emit(BENCH, "corpus_scenes_with_speakers", counts["with_speakers"] / n, "fraction", **extra)
    emit(BENCH, "corpus_function_word_role_names", roles["function_word"], "count", target=0, **extra)
    for hint in ("explicit", "latent", "none"):
        emit(BENCH, f"corpus_vector_{hint}_share", hints[hint] / n, "fraction", **extra)
    emit(BENCH, "corpus_cross_document_links", len(cross_scores), "count", **extra)
    if cross_scores:
        emit(BENCH, "corpus_cross_document_link_median_score", float(np.median(cross_scores)), "cosine", **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("dev", "heldout"), action="append", help="labelled half (default: both)")
    parser.add_argument("--scenes", type=Path, help="also check this SCENES.jsonl as a whole")
    parser.add_argument("--errors", action="store_true", help="print each disagreement with the labels to stderr")
    parser.add_argument("--llm", type=Path, metavar="CONFIG", help="also score the LLM annotator of this run config's scenes.llm endpoint")
    parser.add_argument("--label", default="", help="a name for this run added to every line (e.g. the code measured)")
    args = parser.parse_args()
    label = {"run": args.label} if args.label else {}
    if not SHARED_CORPORA.is_dir():
        print(f"note: {SHARED_CORPORA} not present; only passages of the sample corpus are scored", file=sys.stderr)
    for name in args.set or ("dev", "heldout"):
        if (LABELLED / f"{name}.jsonl").exists():
            score_set(name, args.errors, label, args.llm)
    score_links(label)
    if args.scenes:
        check_scenes_file(args.scenes, label)


if __name__ == "__main__":
    main()
