"""Searcher: query images (or report text) → typed candidates from an index, by image or subject.

``Searcher(index, run_dir)`` embeds queries with the run's model (refusing a run whose fingerprint
differs from the index's), searches the index with metadata filters, optionally re-ranks, collapses
to persons for ``by="subject"``, and attaches calibrated log10 LRs and the open-set decision when the
index is calibrated. ``search_text`` embeds text with the report branch of an MMDL run (same space
as its images); the calibration is fitted on image-vs-image scores, so text results carry none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radsearch.errors import ConfigError
from radsearch.index import VectorIndex, open_index
from radsearch.index.filters import Filter, parse_filters
from radsearch.index.embedder import Embedder, ImageLike, load_embedder, normalise
from radsearch.search.results import Hit, SearchResult

BY = ("image", "subject")
RERANK = ("none", "qe", "dba", "k-reciprocal")
MAX_TEXT_CHARS = 2000


class Searcher:
    """Search an index with a run's model. ``run_dir=None``: vectors only (``search_vectors``)."""

    def __init__(self, index: VectorIndex | str | os.PathLike, run_dir=None, *,
                 checkpoint: str = "best", device: str = "auto", fpir: float = 0.01):
        self.index = index if isinstance(index, VectorIndex) else open_index(index)
        self.embedder: Embedder | None = None
        self.fpir = fpir
        if run_dir is not None:
            self.embedder = load_embedder(run_dir, checkpoint, device)
            if self.index.fingerprint:
                self.index.check_fingerprint(self.embedder.fingerprint, what=f"run {run_dir}")

    def embed(self, images: Sequence[ImageLike], sides: Sequence[str] | None = None
              ) -> np.ndarray:
        if self.embedder is None:
            raise ConfigError("this Searcher has no run folder; pass run_dir to embed images.")
        return self.embedder.embed(list(images), sides)

    def search(self, images: Sequence[ImageLike], k: int = 10, *, by: str = "image",
               filters=None, exclude_subjects: Sequence[str] = (), fuse: bool = False,
               rerank: str | None = None, sides: Sequence[str] | None = None,
               names: Sequence[str] | None = None) -> list[SearchResult]:
        """One result per image (``fuse=True``: one result for all, e.g. one person's images)."""
        images = list(images)
        if not images:
            raise ConfigError("no query images given.")
        vectors = self.embed(images, sides)
        if names is None:
            names = [img if isinstance(img, (str, os.PathLike)) else f"array {i}"
                     for i, img in enumerate(images)]
            names = [os.fspath(n) for n in names]
        if fuse:
            vectors = normalise(vectors.mean(axis=0, keepdims=True))
            names = [" + ".join(names)]
        return self.search_vectors(vectors, k, by=by, filters=filters,
                                   exclude_subjects=exclude_subjects, rerank=rerank, names=names)

    @property
    def has_text(self) -> bool:
        """Whether ``search_text`` works (the run has a report encoder in the image space)."""
        return self.embedder is not None and self.embedder.has_text

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if self.embedder is None:
            raise ConfigError("this Searcher has no run folder; pass run_dir to search by text.")
        return self.embedder.embed_text(list(texts))

    def search_text(self, texts: Sequence[str], k: int = 10, *, filters=None, by: str = "image",
                    exclude_subjects: Sequence[str] = (), rerank: str | None = None
                    ) -> list[SearchResult]:
        """One result per text (e.g. "small left pleural effusion"): images whose common-space
        vectors are nearest to the report branch's embedding of the text."""
        if not len(texts):
            raise ConfigError("no text query given.")
        texts = [check_text(t, f"text query {i + 1}") for i, t in enumerate(texts)]
        vectors = self.embed_text(texts)
        results = self.search_vectors(vectors, k, by=by, filters=filters,
                                      exclude_subjects=exclude_subjects, rerank=rerank,
                                      names=texts, calibrated=False)
        if self.index.calibration:
            for result in results:
                result.notes.append("text query: the index's calibration (image vs image scores) "
                                    "does not apply; ranked by cosine similarity only")
        return results

    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, by: str = "image",
                       filters=None, exclude_subjects: Sequence[str] = (),
                       rerank: str | None = None, names: Sequence[str] | None = None,
                       calibrated: bool = True) -> list[SearchResult]:
        from radsearch.index.calibration import decide, log10_lr

        if by not in BY:
            raise ConfigError(f"--by {by!r}: use image or subject.")
        rerank = rerank or "none"
        if rerank not in RERANK:
            raise ConfigError(f"--rerank {rerank!r}: use one of {', '.join(RERANK)}.")
        filters = parse_filters(filters) + [Filter("subject", "!=", str(s))
                                            for s in exclude_subjects]
        vectors = normalise(np.atleast_2d(vectors))
        names = list(names) if names is not None else [f"query {i}" for i in range(len(vectors))]
        ids, scores = self._candidates(vectors, k, by, filters, rerank)
        calibration = self.index.calibration if calibrated else None
        results = []
        for row, name in enumerate(names):
            keep = ids[row] >= 0
            table = self.index.items(ids[row][keep])
            row_scores = scores[row][keep]
            if by == "subject":
                first = ~table["subject"].duplicated().to_numpy()
                table, row_scores = table[first].reset_index(drop=True), row_scores[first]
            table, row_scores = table.iloc[:k], row_scores[:k]
            cosines = row_scores
            if rerank != "none" and calibration and len(table):
                # the calibration was fitted on cosine scores, not on re-ranked ones
                cosines = self.index.get_vectors(table["id"].to_numpy()) @ vectors[row]
            lrs = log10_lr(calibration, cosines)
            hits = [Hit(rank=i + 1, id=int(r.id), subject=r.subject, time=float(r.time),
                        side=r.side, view=r.view, study=r.study,
                        labels=[x for x in r.labels.split("|") if x], image=r.image,
                        score=float(row_scores[i]),
                        log10_lr=None if lrs is None else float(lrs[i]))
                    for i, r in enumerate(table.itertuples(index=False))]
            top = hits[0].score if hits else None
            notes = []
            if rerank != "none" and calibration:
                notes.append("re-ranked order; each log10 LR and the decision use the "
                             "candidate's cosine score, which the calibration was fitted on")
                top = float(np.max(cosines)) if hits else None
            results.append(SearchResult(query=name, by=by, hits=hits,
                                        decision=decide(calibration, top, self.fpir), notes=notes))
        return results

    def _candidates(self, vectors, k, by, filters, rerank):
        """Enough image candidates to give ``k`` images or ``k`` distinct subjects."""
        from radsearch.search import rerank as reranking

        want = k if by == "image" else 4 * k
        if rerank != "none":
            want = max(want, reranking.SHORTLIST)
        while True:
            found = self.index.search(vectors, min(want, max(len(self.index), 1)), filters)
            ids, scores = found.ids, found.scores
            if rerank != "none":
                ids, scores = reranking.rerank(self.index, vectors, ids, scores, rerank)
            if by == "image" or want >= len(self.index):
                return ids, scores
            enough = True
            for row in range(len(ids)):
                subjects = self.index.table["subject"].reindex(ids[row][ids[row] >= 0])
                if subjects.nunique() < k and (ids[row] >= 0).all():
                    enough = False
            if enough:
                return ids, scores
            want *= 4


def check_text(text: str, what: str = "text") -> str:
    """A text query: non-empty after stripping, at most MAX_TEXT_CHARS (the message never
    repeats the text: queries may hold patient details)."""
    stripped = str(text).strip()
    if not stripped:
        raise ConfigError(f"{what}: empty; describe a finding, e.g. 'small left pleural "
                          "effusion'.")
    if len(stripped) > MAX_TEXT_CHARS:
        raise ConfigError(f"{what}: {len(stripped)} characters; at most {MAX_TEXT_CHARS}.")
    return stripped


def default_run(index: VectorIndex) -> Path | None:
    """The run folder recorded at build time, if it still exists."""
    run = index.header.get("run")
    return Path(run) if run and Path(run).is_dir() else None
