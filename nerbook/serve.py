"""A tagger behind HTTP, with micro-batching (chapter "Deployment").

:func:`create_app` builds a FastAPI application: ``POST /ner`` takes ``{"text": ...}`` or
``{"texts": [...]}`` and answers entities with character offsets; ``GET /health`` names the
model; ``/docs`` and ``/openapi.json`` describe both. Requests are bounded (body bytes, texts per
request, characters per text): bad input is a 413 or a 422, never a 500.

Concurrent requests meet in a :class:`MicroBatcher`: one worker task takes what is queued, up to
``max_batch`` texts or ``batch_wait_ms`` after the first, and runs the model once on all of it in
a thread, so the event loop keeps answering while the model works, one batch at a time.

:func:`serve` runs the application with uvicorn (SIGTERM/SIGINT end it cleanly, exit status 0);
:func:`load_test` measures a running server from the same machine.
"""

# No ``from __future__ import annotations``: FastAPI reads the request model of ``POST /ner``,
# built inside create_app with its limits, from the handler's annotation, which must be an object.

import asyncio
import ipaddress
import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

__all__ = ["BodyLimit", "EntityOut", "MicroBatcher", "TextEntities", "TextsEntities", "create_app",
           "describe", "is_loopback", "listening_socket", "load_test", "ner_url", "request_model", "serve"]


class EntityOut(BaseModel):
    """One entity: ``text[start:end]`` is of ``type``; ``score`` is its confidence."""

    type: str
    start: int
    end: int
    text: str
    score: float


class TextEntities(BaseModel):
    """The answer to ``{"text": ...}``."""

    entities: list[EntityOut]


class TextsEntities(BaseModel):
    """The answer to ``{"texts": [...]}``: one result a text, in order."""

    results: list[TextEntities]


class _OneOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list of strings)')
        return self


def request_model(max_text_chars: int, max_texts: int) -> type[BaseModel]:
    """The body of ``POST /ner`` with its limits (they show in the OpenAPI schema too)."""
    text = Field(None, max_length=max_text_chars, description=f"one text of up to {max_text_chars} characters")
    texts = Field(None, max_length=max_texts,
                  description=f"up to {max_texts} texts of up to {max_text_chars} characters each")
    item = Annotated[str, Field(max_length=max_text_chars)]
    return create_model("NerRequest", __base__=_OneOf, text=(str | None, text),
                        texts=(list[item] | None, texts))


class MicroBatcher:
    """Queue texts from concurrent requests; one worker runs ``predict`` on up to ``max_batch``
    texts at a time (waiting at most ``wait_ms`` after it is free for more to come), in a thread.

    ``predict(list_of_texts)`` returns one result a text. A request larger than ``max_batch``
    goes in ``max_batch`` pieces. The worker starts on first use (or :meth:`start`);
    :meth:`stop` cancels it and fails whatever still waits.
    """

    def __init__(self, predict: Callable[[list[str]], list], max_batch: int = 32,
                 wait_ms: float = 5.0) -> None:
        if max_batch < 1 or wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and wait_ms >= 0, got {max_batch}, {wait_ms}")
        self.predict = predict
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.batch_sizes: list[int] = []  # texts in each model call, for tests and reports
        self._pending: deque = deque()  # (texts, future) pieces, in arrival order
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._arrived = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, texts: Sequence[str]) -> list:
        """One result a text of ``texts``, from however many batches they went in."""
        if not texts:
            return []
        self.start()
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(0, len(texts), self.max_batch):
            futures.append(loop.create_future())
            self._pending.append((list(texts[i:i + self.max_batch]), futures[-1]))
        self._arrived.set()
        return [r for piece in await asyncio.gather(*futures) for r in piece]

    def _queued(self) -> int:
        return sum(len(texts) for texts, _ in self._pending)

    async def _collect(self) -> list:
        """The next batch: wait for a first piece, then for more until ``max_batch`` texts are
        queued or ``wait_ms`` are over; take the pieces that fit (the first one always)."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while self._queued() < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(left, 0))
            except asyncio.TimeoutError:
                break
        batch = [self._pending.popleft()]
        size = len(batch[0][0])
        while self._pending and size + len(self._pending[0][0]) <= self.max_batch:
            batch.append(self._pending.popleft())
            size += len(batch[-1][0])
        return batch

    async def _work(self) -> None:
        while True:
            batch = [(texts, fut) for texts, fut in await self._collect() if not fut.done()]
            flat = [t for texts, _ in batch for t in texts]
            if not flat:
                continue
            self.batch_sizes.append(len(flat))
            try:
                results = await asyncio.to_thread(self.predict, flat)
            except Exception as e:  # a model failure fails the requests of this batch only
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for texts, fut in batch:
                if not fut.done():
                    fut.set_result(results[i:i + len(texts)])
                i += len(texts)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app sees
    it, whether it announces its length (``Content-Length``) or not (chunked); the body is read
    here, bounded, and handed on whole."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self):
        return JSONResponse({"detail": f"request body too large: the limit is {self.max_bytes} bytes"},
                            status_code=413)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and not length.isdigit():
            return await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
        if length is not None and int(length) > self.max_bytes:
            return await self.too_large()(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self.too_large()(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def describe(tagger, name: str | None = None) -> tuple[str, list[str]]:
    """The model's name (``name``, else its folder or hub id) and the entity types it finds."""
    config = getattr(getattr(tagger, "model", None), "config", None)
    name = name or str(getattr(config, "_name_or_path", "") or type(tagger).__name__)
    names = getattr(getattr(tagger, "schema", None), "names", ())
    types = list(dict.fromkeys(n.split("-", 1)[1] for n in names if n != "O"))
    return name, types


def create_app(tagger, max_body_bytes: int = 1_000_000, max_text_chars: int = 10_000,
               max_texts: int = 64, max_batch: int = 32, batch_wait_ms: float = 5.0,
               model_name: str | None = None) -> FastAPI:
    """A FastAPI application serving ``tagger`` (anything with ``predict_text(list[str])``,
    e.g. :class:`nerbook.predict.Tagger`): ``POST /ner``, ``GET /health``, ``/docs``.

    Limits: a body over ``max_body_bytes`` is a 413; more than ``max_texts`` texts, a text over
    ``max_text_chars`` characters, neither or both of ``text``/``texts``, or malformed JSON is a
    422. Texts of concurrent requests are tagged together, up to ``max_batch`` a model call,
    waiting at most ``batch_wait_ms`` for company.
    """
    batcher = MicroBatcher(tagger.predict_text, max_batch, batch_wait_ms)
    name, types = describe(tagger, model_name)
    NerRequest = request_model(max_text_chars, max_texts)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="nerbook NER", lifespan=lifespan,
                  description="Named entities with character offsets, from a nerbook checkpoint.")
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without echoing the input back (a 10,000-character text, personal data)."""
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        """The server is up: the model's name and the entity types it finds."""
        return {"status": "ok", "model": name, "labels": types}

    @app.post("/ner", response_model=TextEntities | TextsEntities)
    async def ner(body: NerRequest) -> dict:  # type: ignore[valid-type]
        """Entities in one text (``{"text": ...}`` -> ``{"entities": [...]}``) or in a list of
        texts (``{"texts": [...]}`` -> ``{"results": [{"entities": [...]}, ...]}``); ``start``
        and ``end`` are character offsets into the text, ``score`` the entity's confidence."""
        texts = [body.text] if body.text is not None else body.texts
        found = [{"entities": [e.as_dict() for e in es]} for es in await batcher.submit(texts)]
        return found[0] if body.text is not None else {"results": found}

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.x.x.x``, ``::1``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (an :class:`OSError` naming both when it cannot be)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.set_inheritable(True)
    return sock


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          **limits) -> None:
    """Load the checkpoint ``model_dir`` once and serve it on ``host:port`` until SIGTERM or
    SIGINT (Ctrl-C), which finish the requests under way and return normally. ``limits``: the
    keyword arguments of :func:`create_app`."""
    import uvicorn

    from nerbook.predict import Tagger

    sock = listening_socket(host, port)  # before the model loads: a busy port fails at once
    try:
        app = create_app(Tagger.from_checkpoint(model_dir), model_name=str(model_dir), **limits)
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                timeout_graceful_shutdown=5)
        where = f"[{host}]" if ":" in host else host
        logging.getLogger("uvicorn.error").info(  # uvicorn says nothing of sockets it is handed
            "Serving %s on http://%s:%d (API docs: /docs; Ctrl-C or SIGTERM stops)", model_dir, where, port)
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal that stopped it once it has shut down, to end the process
        # the default way (killed by SIGTERM, KeyboardInterrupt): a stop asked for is a success.
        previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        sock.close()


def ner_url(url: str) -> str:
    """``url`` (a server's base or its ``/ner``) as the ``/ner`` endpoint; loopback only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if not is_loopback(parts.hostname):
        raise ValueError(f"load tests run against this machine only (localhost, 127.0.0.1, ::1), not {parts.hostname}")
    return url if parts.path.rstrip("/").endswith("/ner") else url.rstrip("/") + "/ner"


async def _load(url: str, texts: Sequence[str], requests: int, concurrency: int, timeout: float) -> dict:
    import httpx

    latencies: list[float] = []
    responses: dict[int, dict] = {}
    order = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client) -> None:
        for i in order:
            start = time.perf_counter()
            try:
                r = await client.post(url, json={"text": texts[i % len(texts)]})
                responses[i] = r.json() if r.status_code == 200 else {"error": r.status_code, "body": r.text}
            except (httpx.HTTPError, ValueError) as e:
                responses[i] = {"error": type(e).__name__, "body": str(e)}
            latencies.append((time.perf_counter() - start) * 1000)

    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else 0.0

    return {"requests": requests, "errors": sum("error" in r for r in responses.values()),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "throughput_rps": round(requests / wall, 1),
            "responses": dict(sorted(responses.items()))}


def load_test(url: str, texts: Sequence[str], requests: int = 200, concurrency: int = 8,
              timeout: float = 30) -> dict:
    """Send ``requests`` ``{"text": texts[i % len(texts)]}`` requests to a server on this machine
    (``url``: its base or its ``/ner``), ``concurrency`` at a time.

    Returns ``requests``, ``errors`` (a status other than 200, or no answer), latency percentiles
    ``p50_ms``/``p99_ms``, ``throughput_rps``, and ``responses``: request index -> the JSON
    answer (or ``{"error": ..., "body": ...}``). Works inside a running event loop (a notebook)
    too: it then runs in a thread of its own.
    """
    if requests < 1 or concurrency < 1 or not texts:
        raise ValueError("need requests >= 1, concurrency >= 1 and at least one text")
    url = ner_url(url)
    args = (url, list(texts), requests, min(concurrency, requests), timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_load(*args))
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _load(*args)).result()
