"""``POST /search/text``: search the archive with report text ("small left pleural effusion").

Works when the index was built from an MMDL run with a report encoder (``GET /index`` shows it as
``fingerprint.text_encoder``); the text goes through the run's report branch into the space the
images are indexed in. The text is never logged or returned: the audit log records its sha256.
Results are shaped like ``POST /search`` (hits with thumbnails, no file paths); text scores are
not calibrated (the calibration is fitted on image-vs-image scores), so there is no decision.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from radsearch.errors import ConfigError
from radsearch.search.searcher import MAX_TEXT_CHARS, check_text
from radsearch.service.engine import _public_hit
from radsearch.service.limits import MAX_FILTER_CHARS, MAX_FILTERS, MAX_K
from radsearch.service.uploads import UploadError


class TextQuery(BaseModel):
    """JSON body of ``POST /search/text``."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description=f"Findings to look for, at most {MAX_TEXT_CHARS} "
                                       "characters, e.g. 'small left pleural effusion'.")
    k: int = Field(10, ge=1, le=MAX_K, description="Images to return.")
    filters: list[str] = Field(default_factory=list, max_length=MAX_FILTERS,
                               description="FIELD OP VALUE, e.g. 'view=PA', 'labels~Effusion'.")


def text_router(engine, audit) -> APIRouter:
    """The route, bound to the app's engine (model + index) and audit log."""
    router = APIRouter()

    @router.post("/search/text", summary="Search with report text (MMDL runs with a report "
                                         "encoder)")
    async def search_text(query: TextQuery, request: Request) -> dict:
        try:
            text = check_text(query.text)
        except ConfigError as exc:
            raise UploadError(str(exc), status=422) from None
        if any(len(f) > MAX_FILTER_CHARS for f in query.filters):
            raise UploadError(f"filters: each filter has at most {MAX_FILTER_CHARS} characters.",
                              status=422)
        if not engine.searcher.has_text:
            raise UploadError("this index was built with a run that has no report encoder; "
                              "search by text needs an index built from an MMDL run trained "
                              "with reports.", status=400)
        filters = [f for f in query.filters if f.strip()]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        result = await run_in_threadpool(_search, engine, text, query.k, filters)
        result["query"] = {"sha256": digest, "kind": "text", "previews": []}
        client = request.client.host if request.client else "unknown"
        audit.record(client=client, query_sha256=digest, n_images=0, k=query.k, by="image",
                     filters=filters, rerank="none",
                     result_ids=[h["id"] for h in result["hits"]], status=200)
        return result

    return router


def _search(engine, text: str, k: int, filters: list[str]) -> dict:
    result = engine.searcher.search_text([text], k, filters=filters)[0].to_dict()
    result.pop("query", None)
    result["hits"] = [_public_hit(hit) for hit in result["hits"]]
    result["calibrated"] = False
    return result
