"""Typed search results (dataclasses; ``asdict`` gives the JSON of ``radsearch search --json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from radsearch.index.calibration import Decision  # the open-set answer belongs to calibration


@dataclass
class Hit:
    """One candidate: an image (``by="image"``) or a person's best image (``by="subject"``)."""

    rank: int
    id: int
    subject: str
    time: float
    side: str
    view: str
    study: str
    labels: list[str]
    image: str
    score: float                      # cosine similarity (after re-ranking: the re-ranked score)
    log10_lr: float | None = None     # calibrated log10 likelihood ratio (same vs other person)


@dataclass
class SearchResult:
    query: str
    by: str
    hits: list[Hit]
    decision: Decision | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
