"""nerbook.serve and ``nerbook serve``: the HTTP API, its limits, micro-batching, and a real
server under a bounded load test that SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from nerbook.cli import main  # noqa: E402
from nerbook.predict import Tagger  # noqa: E402
from nerbook.serve import create_app, is_loopback, load_test  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"max_body_bytes": 20_000, "max_text_chars": 300, "max_texts": 8}


@pytest.fixture(scope="module")
def tagger(tiny_ckpt):
    return Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")


@pytest.fixture(scope="module")
def texts(synth):
    return [" ".join(words) for words in synth["valid"]["tokens"][:16]]


@pytest.fixture(scope="module")
def client(tagger):
    with TestClient(create_app(tagger, **LIMITS)) as c:
        yield c


def assert_same(got: list[dict], want) -> None:
    """JSON entities ``got`` are the Entity objects ``want`` (scores to rounding)."""
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in got] == \
        [(w.type, w.start, w.end, w.text) for w in want]
    assert [e["score"] for e in got] == pytest.approx([w.score for w in want], abs=1e-3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# The API, in process
# --------------------------------------------------------------------------------------


def test_health_docs_and_openapi(client, tagger):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert set(health["labels"]) == {n[2:] for n in tagger.schema.names if n != "O"}
    spec = client.get("/openapi.json").json()
    assert {"/ner", "/health"} <= set(spec["paths"])
    assert "post" in spec["paths"]["/ner"]
    assert client.get("/docs").status_code == 200


def test_one_text_and_a_list_give_what_the_tagger_gives(client, tagger, texts):
    want = tagger.predict_text(texts[:8])
    assert sum(len(w) for w in want) > 0  # the tiny model finds something to compare
    one = client.post("/ner", json={"text": texts[0]})
    assert one.status_code == 200
    assert set(one.json()) == {"entities"}
    assert_same(one.json()["entities"], want[0])
    many = client.post("/ner", json={"texts": texts[:8]}).json()
    assert len(many["results"]) == 8
    for got, w in zip(many["results"], want):
        assert_same(got["entities"], w)
    for e in many["results"][0]["entities"]:
        assert texts[0][e["start"]:e["end"]] == e["text"]
    assert client.post("/ner", json={"texts": []}).json() == {"results": []}
    assert client.post("/ner", json={"text": ""}).json() == {"entities": []}


def test_a_body_too_large_is_a_413_with_or_without_content_length(client):
    big = json.dumps({"text": "x" * 30_000}).encode()
    r = client.post("/ner", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "20000 bytes" in r.json()["detail"]

    def chunks():
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = client.post("/ner", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "detail" in r.json()


@pytest.mark.parametrize("body, words", [
    ({"texts": ["a"] * 9}, "at most 8"),
    ({"text": "y" * 301}, "at most 300 characters"),
    ({"texts": ["ok", "z" * 301]}, "at most 300 characters"),
    ({}, "exactly one"),
    ({"text": "a", "texts": ["b"]}, "exactly one"),
    ({"text": 3}, "string"),
    ({"text": "a", "extra": 1}, "not permitted"),
])
def test_bad_input_is_a_422_that_says_why(client, body, words):
    r = client.post("/ner", json=body)
    assert r.status_code == 422
    assert words in json.dumps(r.json()["detail"])
    assert all("input" not in e for e in r.json()["detail"])  # the text is not echoed back


def test_malformed_json_or_not_an_object_is_a_422(client):
    for raw in (b'{"text": "a"', b"not json", b"", b"[1]", b"\xff\xfe", b'{"text": "\\ud800"}'):
        r = client.post("/ner", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, raw


# --------------------------------------------------------------------------------------
# Micro-batching
# --------------------------------------------------------------------------------------


class Recording:
    """A tagger that records how many texts each model call had."""

    def __init__(self, tagger):
        self.tagger, self.schema, self.model = tagger, tagger.schema, tagger.model
        self.sizes: list[int] = []

    def predict_text(self, texts):
        self.sizes.append(len(texts))
        time.sleep(0.02)  # a slower model: requests pile up meanwhile
        return self.tagger.predict_text(texts)


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_answer(tagger, texts):
    rec = Recording(tagger)
    app = create_app(rec, max_batch=32, batch_wait_ms=50)
    want = tagger.predict_text(texts)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            rs = await asyncio.gather(*(c.post("/ner", json={"text": t}) for t in texts))
            big = await c.post("/ner", json={"texts": texts[:5] * 8})  # 40 texts > max_batch
        await app.state.batcher.stop()
        return rs, big

    rs, big = asyncio.run(go())
    assert len(texts) == 16 and len(rec.sizes) < 16
    assert sum(rec.sizes[:-2]) == 16 and rec.sizes[-2:] == [32, 8]  # 40 texts: 32, then 8
    for r, w in zip(rs, want):
        assert_same(r.json()["entities"], w)
    assert [len(x["entities"]) for x in big.json()["results"]] == [len(w) for w in want[:5] * 8]


# --------------------------------------------------------------------------------------
# The command line and a real server
# --------------------------------------------------------------------------------------


def test_help_and_the_non_loopback_warning(capsys, monkeypatch):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--host", "--port", "--max-batch", "--batch-wait-ms",
                 "--max-body-bytes", "--max-text-chars", "127.0.0.1"):
        assert flag in out
    calls = []
    monkeypatch.setattr("nerbook.serve.serve", lambda *a, **k: calls.append((a, k)))
    assert main(["serve", "--model", "m", "--host", "0.0.0.0", "--max-batch", "4"]) == 0
    assert "warning" in capsys.readouterr().err
    assert calls[0][1]["host"] == "0.0.0.0" and calls[0][1]["max_batch"] == 4
    assert main(["serve", "--model", "m"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("10.0.0.1")
    with pytest.raises(ValueError, match="this machine only"):
        load_test("http://192.0.2.1:8000", ["x"])


def test_a_busy_port_is_a_one_line_error(tiny_ckpt, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(tiny_ckpt), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def wait_for_health(url: str, proc, log: Path, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(url + "/health", timeout=1, trust_env=False).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"no /health within {seconds} s: {log.read_text()}")


def test_a_real_server_under_load_then_sigterm(tiny_ckpt, tagger, texts, tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "nerbook", "serve", "--model", str(tiny_ckpt), "--port", str(port),
           "--log-level", "warning"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_health(url, proc, log)["status"] == "ok"
        report = load_test(url, texts, requests=100, concurrency=8)
        print({k: v for k, v in report.items() if k != "responses"})
        assert report["errors"] == 0 and report["requests"] == 100
        assert sorted(report["responses"]) == list(range(100))
        want = tagger.predict_text(texts)
        for i, got in report["responses"].items():
            assert_same(got["entities"], want[i % len(texts)])
        assert report["p50_ms"] <= report["p99_ms"] and report["throughput_rps"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
