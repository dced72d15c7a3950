"""Search an index with query images: by image or by subject, filters, re-ranking, open set.

::

    from radsearch.search import Searcher
    searcher = Searcher("knees.index", "runs/AdaTriplet-AM-s0")
    for result in searcher.search(["query.png"], k=10, by="subject"):
        print(result.decision, [(h.rank, h.subject, h.score, h.log10_lr) for h in result.hits])
"""

from radsearch.search.results import Decision, Hit, SearchResult


def __getattr__(name):  # lazy: importing the results types does not load faiss and the model code
    if name == "Searcher":
        from radsearch.search.searcher import Searcher
        return Searcher
    if name == "load_embedder":
        from radsearch.index.embedder import load_embedder
        return load_embedder
    raise AttributeError(name)


__all__ = ["Decision", "Hit", "SearchResult", "Searcher", "load_embedder"]
