"""Cloze on real text: a content word of a sentence is masked and the model ranks the true word
against distractors by the log-likelihood of the whole sentence with each in its place
(docs/eval.md, "Cloze").

Sentences come from the plain text of real documents (a fact set's biographies are left out), in
two splits: `heldout` (documents never trained: does the model predict words it has not read there?)
and `train` (sentences read verbatim in training: the memorized reference). A content word is one
of at least `min_word_chars` letters that is not the sentence's first word; its distractors are
content words of other sentences of the same language and split, of about its length (within two
letters, else any), so the length of a word does not give it away. Since the prefix before the
word is the same for every candidate, ranking log p(candidate + rest | prefix) ranks the sentences.
Paraphrased sentences need a paraphrase of held-out text, which only a generative lens (an LLM)
makes and held-out documents never take: eval.json says so.
"""

from __future__ import annotations

import random
import re

import numpy as np

from ltm.config import ClozeConfig
from ltm.eval.likelihood import continuation_logprobs
from ltm.eval.qa import wilson
from ltm.formats import ClozeGroup, ClozeResult, ClozeScore
from ltm.markup import SCENE_BEGIN

SENTENCE = re.compile(r"(?<=[.!?…])\s+")
WORD = re.compile(r"[^\W\d_]+")
PARAPHRASED = ("not measured: a paraphrase of held-out text needs a generative lens (an LLM), and held-out documents take "
               "built-in lenses only")


def sentences(text: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    return [s.strip() for s in SENTENCE.split(" ".join(text.split())) if min_words <= len(s.split()) <= max_words]


def content_words(sentence: str, min_chars: int) -> list[re.Match]:
    """The words that may be masked: long enough, and not the first (a prefix must remain)."""
    return [m for m in WORD.finditer(sentence) if len(m.group()) >= min_chars and m.start() > 0]


def make_items(texts: list[tuple[str, str]], config: ClozeConfig, rng: random.Random) -> list[tuple[str, str, list[str], str]]:
    """(prefix, suffix, [true word, distractors...], lang) for up to config.items sentences of (text, lang) pairs."""
    pool: dict[str, list[str]] = {}
    found = []
    for text, lang in texts:
        for sentence in sentences(text):
            words = content_words(sentence, config.min_word_chars)
            if words:
                found.append((sentence, rng.choice(words), lang))
                pool.setdefault(lang, []).extend(w.group() for w in words)
    rng.shuffle(found)
    items = []
    for sentence, word, lang in found:
        true = word.group()
        others = sorted({w for w in pool[lang] if w.lower() != true.lower()})
        near = [w for w in others if abs(len(w) - len(true)) <= 2]
        choices = near if len(near) >= config.candidates - 1 else others
        if len(choices) < config.candidates - 1:
            continue
        items.append((sentence[:word.start()].rstrip(), sentence[word.end():], [true, *rng.sample(choices, config.candidates - 1)], lang))
        if len(items) == config.items:
            break
    return items


def _score(ranks: np.ndarray, candidates: int) -> ClozeScore:
    top = int((ranks == 0).sum())
    return ClozeScore(n=len(ranks), accuracy=top / max(len(ranks), 1), accuracy_ci95=wilson(top, len(ranks)),
                      mrr=float((1 / (ranks + 1)).mean()) if len(ranks) else 0.0, chance=1 / candidates)


def score_items(model, tokenizer, items, candidates: int, batch_size: int) -> ClozeGroup:
    opening = [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(SCENE_BEGIN)]

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    contexts, continuations = [], []
    for prefix, suffix, words, _ in items:
        context = opening + encode(prefix)
        for word in words:
            contexts.append(context)
            continuations.append(encode(" " + word + suffix))
    logprob, _ = continuation_logprobs(model, contexts, continuations, batch_size) if items else (np.zeros(0), None)
    scores = logprob.reshape(len(items), candidates)
    # The true word's rank: how many candidates score at least as high (a tie counts against it).
    ranks = (scores[:, 1:] >= scores[:, :1]).sum(axis=1)
    langs = np.asarray([lang for *_, lang in items])
    return ClozeGroup(**_score(ranks, candidates).model_dump(),
                      by_language={str(lang): _score(ranks[langs == lang], candidates) for lang in dict.fromkeys(langs.tolist())})


def real_texts(tokens, segments: dict[str, np.ndarray], manifest, tokenizer, plain: int, want_chars: int,
               seed: int) -> list[tuple[str, str]]:
    """(text, language) of plain scenes of real documents (a fact set's are left out: they carry a
    person tag), each scene once, in a seeded order, until `want_chars` characters."""
    rows, seen = [], set()
    for row in np.flatnonzero(segments["lens"] == plain):
        key = (int(segments["doc"][row]), int(segments["scene"][row]))
        if key not in seen and "person" not in manifest.doc_tags.get(manifest.docs[key[0]], {}):
            seen.add(key)
            rows.append(int(row))
    random.Random(seed).shuffle(rows)
    out, total = [], 0
    for row in rows:
        if total >= want_chars:
            break
        text = tokenizer.decode(tokens[int(segments["start"][row]):int(segments["end"][row])].tolist(), skip_special_tokens=True)
        out.append((text, str(manifest.doc_tags.get(manifest.docs[segments["doc"][row]], {}).get("lang", "other"))))
        total += len(text)
    return out


def evaluate_cloze(model, tokenizer, splits: dict[str, list[tuple[str, str]]], config: ClozeConfig, batch_size: int, seed: int) -> ClozeResult:
    """`splits`: split name -> the (text, language) of its real documents' plain scenes."""
    by_split = {}
    for name, texts in splits.items():
        items = make_items(texts, config, random.Random(f"{seed}:{name}"))
        if items:
            by_split[name] = score_items(model, tokenizer, items, config.candidates, batch_size)
    return ClozeResult(candidates=config.candidates, min_word_chars=config.min_word_chars, by_split=by_split, paraphrased=PARAPHRASED)
