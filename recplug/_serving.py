"""``recplug serve``: a registered model answering HTTP requests (FastAPI on uvicorn: the ``recplug[serve]`` extra).

Requests that arrive together are scored together: handlers put prepared requests on a queue, and one batcher
task takes everything that arrived within ``batch_window_ms`` of the first (up to ``max_batch``) and scores it in
one forward pass on a worker thread, so throughput grows with concurrency. A served alias (``NAME@production``) is
polled every ``poll_seconds``: when it moves, the new version is loaded beside the old one and swapped in;
requests already prepared finish on the version they started with, so none is dropped.

Safe by default: it binds 127.0.0.1; bodies, histories, k and batch lengths are bounded; every bad request gets a
4xx JSON error naming the field, and anything unexpected a 500 JSON error without a traceback. It loads only
registry entries whose checksums verify (:meth:`ModelRegistry.load`).
"""


import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import attrs
import numpy as np
import pandas as pd
import torch

from ._devices import usable_cores
from ._errors import RecplugError, SpecError
from ._model_registry import ModelRef, ModelRegistry, ServedModel
from ._paths import check_name

log = logging.getLogger("recplug.serve")

NOTHING = np.zeros(0, dtype=np.int64)
UNION_TAGS = ("int", "str", "float")
"""What pydantic adds to an error's location for the member of a union that failed; not part of the field."""

OPTIONS_ENV = "RECPLUG_SERVE_OPTIONS"
"""How ``--workers`` processes receive the options (uvicorn imports the app factory in each)."""


@attrs.frozen
class ServeOptions:
    """What ``recplug serve`` serves and how; every limit bounds what one request may ask."""

    ref: str
    registry: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    batch_window_ms: float = 2.0
    """How long the batcher waits after a request for others to join its forward pass."""
    max_batch: int = 256
    """Requests scored in one forward pass at most."""
    poll_seconds: float = 2.0
    """How often the served alias is checked for a move (0: never)."""
    max_body_bytes: int = 1_000_000
    max_history: int = 2_000
    max_k: int = 1_000
    max_requests: int = 256
    """Requests in one ``/recommend/batch`` body at most."""
    threads: int | None = None
    """torch threads for scoring (default: all cores but one, which the HTTP event loop keeps)."""


def require_serving() -> None:
    """The one-line error that says how to install the extra, when it is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise SpecError("recplug serve needs FastAPI and uvicorn: pip install 'recplug[serve]'", where="serve") from None


class ModelHolder:
    """The version that answers now; follows its alias when the reference names one."""

    def __init__(self, registry: ModelRegistry, ref: str) -> None:
        self.registry, self.ref = registry, ref
        self.current: ServedModel = load_for_serving(registry, ref)
        parsed = ModelRef.parse(ref)
        self.follows_alias = parsed.alias is not None or parsed.version is None

    async def follow(self, poll_seconds: float) -> None:
        """Poll the reference; load and swap in a new version when it resolves to one."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                name, version = await asyncio.to_thread(self.registry.resolve, self.ref)
                if f"{name}:{version}" != self.current.ref:
                    loaded = await asyncio.to_thread(load_for_serving, self.registry, f"{name}:{version}")
                    log.info("%s now answers %s (was %s)", loaded.ref, self.ref, self.current.ref)
                    self.current = loaded
            except (RecplugError, OSError) as exc:  # keep answering with the version we have
                log.warning("cannot follow %s (%s); %s keeps answering", self.ref, exc, self.current.ref)


def load_for_serving(registry: ModelRegistry, ref: str) -> ServedModel:
    """A verified version with its known users encoded (when the recommender encodes users), so a known user's
    request costs a decode, not a forward pass over the history."""
    served = registry.load(ref)
    started = time.perf_counter()
    served.encode_known_users()
    if served.user_vectors is not None:
        log.info("%s: %d known users encoded in %.1fs", served.ref, served.vocab.n_users, time.perf_counter() - started)
    return served


@attrs.frozen
class Prepared:
    """A validated request in tokens, bound to the version that prepared it."""

    model: ServedModel
    user: int
    history: np.ndarray | None
    """Item tokens, or None: the known user's recorded history."""
    exclude: np.ndarray
    k: int
    features: dict[str, Any] | None


class MicroBatcher:
    """Scores queued requests in batches on one worker thread (torch releases the GIL while it computes)."""

    def __init__(self, window_ms: float, max_batch: int) -> None:
        self.window, self.max_batch = window_ms / 1000, max_batch
        self.queue: asyncio.Queue[tuple[Prepared, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recplug-score")
        self.batches = self.scored = 0

    async def submit(self, request: Prepared) -> tuple[list[int], list[float]]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((request, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            if self.window > 0 and self.queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.window)
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                results = await loop.run_in_executor(self.executor, score_batch, [r for r, _ in batch])
            except Exception as exc:  # a bug: every request of the batch gets a 500, the server goes on
                log.exception("scoring a batch of %d failed", len(batch))
                results = [exc] * len(batch)  # type: ignore[list-item]
            self.batches, self.scored = self.batches + 1, self.scored + len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_exception(result) if isinstance(result, Exception) else future.set_result(result)


def score_batch(requests: list[Prepared]) -> list[tuple[list[int], list[float]]]:
    """One forward pass per (version, known-or-new-user-features) group of the batch."""
    results: list[Any] = [None] * len(requests)
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((id(r.model), r.features is not None), []).append(i)
    for (_, new_users), index in groups.items():
        group = [requests[i] for i in index]
        model, k = group[0].model, max(r.k for r in group)
        features = pd.DataFrame([r.features for r in group]) if new_users else None
        top, scores = model.recommend_tokens([r.user for r in group], [r.history for r in group], k,
                                             exclude=[r.exclude for r in group], new_user_features=features)  # fmt: skip
        items = model.vocab.item_ids[top.numpy()]
        for row, (i, r) in enumerate(zip(index, group)):
            results[i] = (items[row, : r.k].tolist(), scores[row, : r.k].tolist())
    return results


class RequestError(Exception):
    """A request recplug refuses: its HTTP status, the field at fault and why."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def prepare(model: ServedModel, request: Any, options: ServeOptions, where: str = "") -> Prepared:
    """Validate one request against the model's vocabularies and the limits; raise :class:`RequestError`."""
    if request.user_id is None and request.history is None:
        raise RequestError(422, f"{where}user_id", "give user_id (a known user), history (raw item ids), or both")
    if request.user_features is not None and request.user_id is not None:
        raise RequestError(422, f"{where}user_features", "user features describe a new user: send them with a "
                                                         "history and no user_id")  # fmt: skip
    user = -1
    if request.user_id is not None:
        token = model.user_token(request.user_id)
        if token is None:
            raise RequestError(404, f"{where}user_id", f"unknown user id {request.user_id!r}")
        user = token
    history = _tokens(model, request.history, f"{where}history") if request.history is not None else None
    exclude = _tokens(model, request.exclude, f"{where}exclude") if request.exclude else NOTHING
    return Prepared(model, user, history, exclude, request.k, request.user_features)


def _tokens(model: ServedModel, ids: list[Any], field: str) -> np.ndarray:
    tokens, unknown = model.lookup_items(ids)
    if unknown:
        raise RequestError(422, field, f"unknown item id(s): {', '.join(map(repr, unknown[:5]))}"
                                       + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))  # fmt: skip
    return np.asarray(tokens, dtype=np.int64)


def create_app(options: ServeOptions, holder: ModelHolder | None = None) -> Any:
    """The FastAPI application serving ``options.ref`` (loaded here unless ``holder`` is given)."""
    from fastapi import FastAPI, Request
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.routing import Route

    from ._version import __version__

    Id = int | str

    class RecommendRequest(BaseModel):
        """One user's request: a known ``user_id`` (their recorded history is used), and/or a ``history``."""

        model_config = ConfigDict(extra="forbid")
        user_id: Id | None = Field(None, description="A known user's raw id.")
        history: list[Id] | None = Field(None, max_length=options.max_history,
                                         description="Raw item ids, oldest first (a new user, or a newer history).")
        k: int = Field(10, ge=1, le=options.max_k, description="How many items.")
        exclude: list[Id] = Field(default_factory=list, max_length=options.max_history,
                                  description="Raw item ids never to recommend (the history is always excluded).")
        user_features: dict[str, str | int | float] | None = Field(
            None, description="A new user's features (with a history, no user_id), e.g. {\"gender\": \"F\"}.")

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        requests: list[RecommendRequest] = Field(min_length=1, max_length=options.max_requests)

    class Recommendation(BaseModel):
        item_id: Id
        score: float

    class RecommendResponse(BaseModel):
        model: str = Field(description="The version that answered (NAME:VERSION).")
        recommendations: list[Recommendation]

    class BatchResponse(BaseModel):
        model: str
        results: list[list[Recommendation]]

    class ErrorResponse(BaseModel):
        error: str = Field(description="What is wrong.")
        field: str | None = Field(description="The field at fault (dotted path), when one is.")

    registry = ModelRegistry(options.registry)
    batcher = MicroBatcher(options.batch_window_ms, options.max_batch)
    state: dict[str, Any] = {"holder": holder}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if state["holder"] is None:
            state["holder"] = await asyncio.to_thread(ModelHolder, registry, options.ref)
        tasks = [asyncio.create_task(batcher.run())]
        if options.poll_seconds > 0 and state["holder"].follows_alias:
            tasks.append(asyncio.create_task(state["holder"].follow(options.poll_seconds)))
        log.info("serving %s (%s) on http://%s:%d", options.ref, state["holder"].current.ref, options.host, options.port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            batcher.executor.shutdown(wait=False)

    app = FastAPI(title="recplug serve", version=__version__, lifespan=lifespan,
                  description=f"Recommendations from the registered model {options.ref}.")  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)

    def error(status: int, field: str | None, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "field": field}, status_code=status)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.field, exc.message)

    @app.exception_handler(Exception)
    async def broken(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s: %r", request.url.path, exc)
        return error(500, None, "internal error (logged by the server)")

    def json_response(payload: dict[str, Any]) -> Response:
        return Response(json.dumps(payload), media_type="application/json")

    def answer(items: list[Any], scores: list[float]) -> list[dict[str, Any]]:
        return [{"item_id": _plain(i), "score": round(s, 6)} for i, s in zip(items, scores)]

    def parse(cls: type[BaseModel], raw: bytes) -> Any:
        """The body as ``cls`` (JSON whatever the content type says); the first problem, with its field, is
        the error: 400 for malformed JSON, 422 for a wrong value."""
        if not raw.strip():
            raise RequestError(422, None, "a JSON body is required")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid":
                raise RequestError(400, None, f"malformed JSON: {first['msg']}") from None
            where = [str(p) for p in first["loc"] if p not in UNION_TAGS]  # ('user_id', 'int') -> user_id
            raise RequestError(422, ".".join(where) or None, first["msg"]) from None

    async def recommend(request: Request) -> Response:
        body = parse(RecommendRequest, await request.body())
        model = state["holder"].current
        items, scores = await batcher.submit(prepare(model, body, options))
        return json_response({"model": model.ref, "recommendations": answer(items, scores)})

    async def recommend_batch(request: Request) -> Response:
        body = parse(BatchRequest, await request.body())
        model = state["holder"].current
        prepared = [prepare(model, r, options, f"requests.{i}.") for i, r in enumerate(body.requests)]
        results = await asyncio.gather(*(batcher.submit(p) for p in prepared))
        return json_response({"model": model.ref, "results": [answer(*r) for r in results]})

    # The two hot endpoints are plain Starlette routes (no per-request dependency solving: about a third more
    # requests per second); their OpenAPI entries are written from the same pydantic models below.
    app.router.routes.append(Route("/recommend", recommend, methods=["POST"]))
    app.router.routes.append(Route("/recommend/batch", recommend_batch, methods=["POST"]))
    hot: dict[str, tuple[type[BaseModel], type[BaseModel], str]] = {
           "/recommend": (RecommendRequest, RecommendResponse, "Top-k items for one user (raw ids in and out)."),
           "/recommend/batch": (BatchRequest, BatchResponse, "Top-k items for several users in one body.")}  # fmt: skip

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, (request_model, response_model, summary) in hot.items():
                for model in (request_model, response_model, ErrorResponse):
                    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                    components.update(found.pop("$defs", {}))
                    components[model.__name__] = found

                def ref(model: type[BaseModel]) -> dict[str, Any]:
                    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}

                schema["paths"][path] = {"post": {
                    "summary": summary, "requestBody": {"required": True, **ref(request_model)},
                    "responses": {"200": {"description": "The recommendations", **ref(response_model)},
                                  "4XX": {"description": "A bad request, naming its field", **ref(ErrorResponse)}},
                }}  # fmt: skip
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/models")
    async def models() -> Response:
        """Every registered version, and which one answers."""
        rows = await asyncio.to_thread(registry.list_versions)
        return json_response({"serving": {"ref": options.ref, "version": state["holder"].current.ref},
                              "models": rows})  # fmt: skip

    @app.get("/models/{name}")
    async def model(name: str) -> Response:
        """The versions of one model: aliases, created, plugin, metrics."""
        try:
            check_name(name, "model name")
        except ValueError as exc:
            raise RequestError(422, "name", str(exc)) from None
        rows = [r for r in await asyncio.to_thread(registry.list_versions) if r["name"] == name]
        if not rows:
            raise RequestError(404, "name", f"no model named {name!r}")
        return json_response({"name": name, "versions": rows})

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        """The model is loaded and the batcher runs (503 until then)."""
        if state["holder"] is None:
            return JSONResponse({"ready": False}, status_code=503)
        return json_response({"ready": True, "model": state["holder"].current.ref,
                              "batches": batcher.batches, "scored": batcher.scored})  # fmt: skip

    return app


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` (declared or streamed) is a 413 before any parsing."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _send_json(send, 413, {"error": f"the body is over {self.max_bytes} bytes", "field": None})
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise RequestError(413, None, f"the body is over {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


async def _send_json(send: Callable, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def scoring_threads() -> int:
    """All the cores this process may use but one (at least one)."""
    return max(1, usable_cores() - 1)


def app_from_environment() -> Any:
    """The app factory each ``--workers`` process imports (options travel in :data:`OPTIONS_ENV`)."""
    options = ServeOptions(**json.loads(os.environ[OPTIONS_ENV]))
    torch.set_num_threads(options.threads or scoring_threads())
    return create_app(options)


def serve(options: ServeOptions) -> None:
    """Check the model loads (a clear error before binding), then run uvicorn until SIGINT/SIGTERM; requests in
    flight finish first."""
    import uvicorn

    holder = ModelHolder(ModelRegistry(options.registry), options.ref)
    torch.set_num_threads(options.threads or scoring_threads())
    gc.collect()
    gc.freeze()  # what is loaded now lives as long as the server: no collection pass walks it again
    common: dict[str, Any] = {"host": options.host, "port": options.port, "log_level": "warning",
                              "timeout_graceful_shutdown": 30}  # fmt: skip
    if options.workers > 1:
        os.environ[OPTIONS_ENV] = json.dumps(attrs.asdict(options))
        uvicorn.run("recplug._serving:app_from_environment", factory=True, workers=options.workers, **common)
    else:
        uvicorn.run(create_app(options, holder), **common)

