"""The FastAPI application: search, items, thumbnails, health, index info and the web page.

``create_app(engine, settings)`` wires an :class:`~radsearch.service.engine.SearchEngine` (model +
index, loaded once at start-up) behind HTTP. Every error is JSON ``{"error", "status"}`` with a
4xx status for bad input; an unexpected failure is a 500 with a generic message (the traceback
goes to the server log only). No request value is ever used as a file path: items are addressed
by integer id and their image paths come from the index.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from radsearch.errors import RadsearchError
from radsearch.service.audit import AuditLog
from radsearch.service.auth import authorised
from radsearch.service.batching import MicroBatcher
from radsearch.service.engine import RERANK, ItemNotFound
from radsearch.service.limits import MAX_FILTER_CHARS, MAX_FILTERS, MAX_K, BodyLimitMiddleware
from radsearch.service.render import FULL_PX, THUMBNAIL_PX, PngCache, data_url, to_png
from radsearch.service.text import text_router
from radsearch.service.uploads import Limits, UploadError, decode_upload

log = logging.getLogger(__name__)
BY = ("image", "subject")
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
PUBLIC = {"/", "/static/app.js", "/static/style.css", "/health"}


@dataclass
class Settings:
    token: str | None = None                 # bearer token; None = no auth (loopback only)
    limits: Limits = field(default_factory=Limits)
    max_batch: int = 16                      # images per model forward (1 = one at a time)
    max_wait_s: float = 0.005                # how long a forward waits for more requests
    audit_log: str | Path | None = None
    cors_origins: tuple[str, ...] = ()       # CORS stays off unless origins are named
    workers: int = 2                         # threads that decode uploads and search the index
    server_timing: bool = False              # per-stage Server-Timing header (for benchmarks)


class _Clock:
    """Seconds spent per stage of one request, for the optional ``Server-Timing`` header."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str | None) -> None:
        """Charge the time since the previous lap to ``stage`` (None: to nothing)."""
        now = time.perf_counter()
        if stage is not None:
            self.stages[stage] = self.stages.get(stage, 0.0) + now - self._last
        self._last = now


def _one_native_thread() -> None:
    """Each work thread runs faiss / BLAS with one thread: the pool's threads are the
    parallelism. A new thread otherwise gets OpenMP's default (all cores) whatever the main
    thread set: a 100k-item faiss search from such a thread took ~100 ms instead of ~9 ms on
    the busy 2-core machine (the 'faiss search' stage of benchmarks/service.py shows it)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _server_timing(stages: dict[str, float], total: float) -> str:
    """``Server-Timing`` (W3C) value: durations in ms; ``batch`` is a count, sent as desc."""
    parts = [f"{name};dur={value * 1000:.3f}" for name, value in stages.items()
             if name != "batch"]
    if "batch" in stages:
        parts.append(f'batch;desc="{int(stages["batch"])}"')
    return ", ".join(parts + [f"total;dur={total * 1000:.3f}"])


def create_app(engine, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    batcher = MicroBatcher(engine.forward, settings.max_batch, settings.max_wait_s)
    # decoding, preprocessing and index search run here, beside the single model thread; a
    # small pool (not the 40-thread default) so 8 requests do not fight over 2 cores at once
    work_pool = concurrent.futures.ThreadPoolExecutor(max(1, settings.workers),
                                                      thread_name_prefix="radsearch-work",
                                                      initializer=_one_native_thread)
    audit = AuditLog(settings.audit_log)
    cache = PngCache()
    pages = {route: (resources.files("radsearch.service").joinpath("static", name).read_bytes(),
                     kind) for route, (name, kind) in STATIC.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()
        work_pool.shutdown(wait=True)

    app = FastAPI(title="radsearch", version="1", lifespan=lifespan,
                  description="Content-based X-ray retrieval: upload a radiograph, get the most "
                              "similar archive images or persons.")
    app.state.engine, app.state.batcher, app.state.cache = engine, batcher, cache

    # ---------------------------------------------------------------- errors: JSON, never a trace
    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"{where or 'request'}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        return error(exc.status, str(exc))

    @app.exception_handler(ItemNotFound)
    async def not_found(request: Request, exc: ItemNotFound):
        return error(404, str(exc))

    @app.exception_handler(RadsearchError)
    async def user_error(request: Request, exc: RadsearchError):
        return error(400, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, "internal server error; the server log has the details.")

    # ---------------------------------------------------------------- auth and headers
    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        if request.url.path not in PUBLIC and not authorised(
                request.headers.get("authorization"), settings.token):
            response = error(401, "missing or wrong bearer token (Authorization: Bearer …).")
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = await call_next(request)
        if settings.server_timing and hasattr(request.state, "timings"):
            response.headers["Server-Timing"] = _server_timing(
                request.state.timings, time.perf_counter() - started)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_request_bytes)

    # ---------------------------------------------------------------- the page
    def page(route: str):
        body, kind = pages[route]

        async def serve() -> Response:
            return Response(body, media_type=kind, headers={
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                           "style-src 'self'; script-src 'self'"})
        return serve

    for route in STATIC:
        app.add_api_route(route, page(route), methods=["GET"], include_in_schema=False)

    # ---------------------------------------------------------------- API
    @app.get("/health", summary="Liveness and batching counters")
    async def health() -> dict:
        return {"status": "ok", "items": engine.count(), "forward_passes": batcher.batches,
                "images_embedded": batcher.images}

    @app.get("/index", summary="Index size, model fingerprint and calibration")
    async def index_info() -> dict:
        return engine.info()

    @app.post("/search", summary="Search with one query (one or several images of one person)")
    async def search(request: Request) -> dict:
        clock = _Clock()
        form = await request.form(max_files=settings.limits.max_files + 1, max_fields=32)
        try:
            params = _search_params(form)
            side = params.pop("side")
            uploads = [v for v in form.getlist("images") if hasattr(v, "read")]
            if not uploads:
                raise UploadError("no image: send one or more files in the multipart field "
                                  "'images'.")
            if len(uploads) > settings.limits.max_files:
                raise UploadError(f"{len(uploads)} images; at most {settings.limits.max_files} "
                                  "per query.", status=413)
            blobs = [await u.read(settings.limits.max_file_bytes + 1) for u in uploads]
        finally:
            await form.close()
        clock.lap("parse")
        withdraw = batcher.announce()
        try:
            digest, inputs, previews = await in_pool(clock, "decode", _decode_and_prepare,
                                                     blobs, side, clock)
        finally:
            withdraw()                  # no await between here and embed's submission
        shared: dict = {}
        vectors = await batcher.embed(inputs, shared)
        clock.lap("embed")                           # queue + forward + hand-back
        clock.stages.update(queue=shared.get("queue", 0.0), forward=shared.get("forward", 0.0),
                            batch=shared.get("batch", 0))
        result = await in_pool(clock, "search", engine.search, vectors, **params)
        result["query"] = {"sha256": digest, "images": len(inputs), "previews": previews}
        client = request.client.host if request.client else "unknown"
        audit.record(client=client, query_sha256=digest, n_images=len(inputs), k=params["k"],
                     by=params["by"], filters=params["filters"], rerank=params["rerank"],
                     result_ids=[h["id"] for h in result["hits"]], status=200)
        clock.lap("audit")
        response = JSONResponse(result)
        clock.lap("json")
        request.state.timings = clock.stages
        return response

    def _decode_and_prepare(blobs: list[bytes], side: str, clock: _Clock):
        """Uploads → (sha256, network inputs, preview PNGs), in a work thread: hashing, decoding
        and rendering a full-size radiograph take tens of ms and must not block the event loop."""
        digest = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in blobs)).hexdigest()
        images = [decode_upload(blob, f"image {i + 1}", settings.limits)
                  for i, blob in enumerate(blobs)]
        clock.lap("decode")
        inputs = [engine.prepare(image, side) for image in images]
        clock.lap("prepare")
        previews = [data_url(to_png(image, FULL_PX // 2)) for image in images]
        clock.lap("preview")
        return digest, inputs, previews

    async def in_pool(clock: _Clock, stage: str, fn, *args, **kwargs):
        """``fn`` in the small work pool; the wait for a free worker is stage ``<stage>_wait``,
        ``fn`` itself is ``stage`` (unless it laps its own stages), the hand-back is ``loop``."""
        clock.lap(None)

        def timed():
            clock.lap(f"{stage}_wait")
            result = fn(*args, **kwargs)
            clock.lap(stage)
            return result

        result = await asyncio.get_running_loop().run_in_executor(work_pool, timed)
        clock.lap("loop")
        return result

    app.include_router(text_router(engine, audit))

    @app.get("/items/{item_id}", summary="Metadata of one indexed item")
    async def item(item_id: int) -> dict:
        return engine.item(item_id)

    @app.get("/items/{item_id}/thumbnail", summary="PNG thumbnail (DICOM window applied)",
             response_class=Response)
    async def thumbnail(item_id: int) -> Response:
        return await _png(item_id, THUMBNAIL_PX)

    @app.get("/items/{item_id}/image", summary="PNG at full size (long side ≤ 2048 px)",
             response_class=Response)
    async def full_image(item_id: int) -> Response:
        return await _png(item_id, FULL_PX)

    async def _png(item_id: int, size: int) -> Response:
        engine.item(item_id)            # 404 before any work for an unknown id
        png = await asyncio.get_running_loop().run_in_executor(
            work_pool, cache.get, (item_id, size), lambda: to_png(engine.load_image(item_id), size))
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    return app


def _search_params(form) -> dict:
    """k, by, filters, rerank from the multipart fields, validated (UploadError 422 otherwise)."""
    known = {"images", "k", "by", "filter", "rerank", "exclude_subject", "side"}
    unknown = sorted(set(form.keys()) - known)
    if unknown:
        raise UploadError(f"unknown field(s) {', '.join(unknown)[:200]}; use "
                          f"{', '.join(sorted(known))}.", status=422)
    text = {key: str(form.get(key)) for key in ("k", "by", "rerank", "side")
            if form.get(key) is not None}
    try:
        k = int(text.get("k", "10"))
    except ValueError:
        raise UploadError(f"k={text['k'][:40]!r}: give a whole number from 1 to {MAX_K}.",
                          status=422) from None
    if not 1 <= k <= MAX_K:
        raise UploadError(f"k={k}: give a whole number from 1 to {MAX_K}.", status=422)
    by = text.get("by", "image")
    if by not in BY:
        raise UploadError(f"by={by[:40]!r}: use image or subject.", status=422)
    rerank = text.get("rerank", "none").lower() or "none"
    if rerank not in RERANK:
        raise UploadError(f"rerank={rerank[:40]!r}: use one of {', '.join(RERANK)}.", status=422)
    side = text.get("side", "").strip().upper()
    if side not in ("", "L", "R"):
        raise UploadError(f"side={side[:40]!r}: the query's side is L, R or empty.", status=422)
    filters = [str(f) for f in form.getlist("filter") if str(f).strip()]
    if any(hasattr(f, "read") for f in form.getlist("filter")) or len(filters) > MAX_FILTERS \
            or any(len(f) > MAX_FILTER_CHARS for f in filters):
        raise UploadError(f"filter: at most {MAX_FILTERS} text filters of up to "
                          f"{MAX_FILTER_CHARS} characters.", status=422)
    excluded = [str(s) for s in form.getlist("exclude_subject") if str(s).strip()]
    filters += [f"subject!={s}" for s in excluded[:16]]
    return {"k": k, "by": by, "filters": filters, "rerank": rerank, "side": side}
