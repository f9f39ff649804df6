"""``recplug serve``: every endpoint, a table of bad requests (a 4xx naming the field, never a 500 or a traceback),
micro-batching, an alias switch under load without a failed request, and SIGTERM finishing requests in flight."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import TESTKIT_ENV, run_cli, to_toml, toy_spec, write_spec

pytest.importorskip("fastapi", reason="recplug[serve] is not installed (CI installs it)")
httpx = pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (recplug[dev])")

from fastapi.testclient import TestClient  # noqa: E402

from recplug._serving import ModelHolder, ServeOptions, create_app  # noqa: E402


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions of the toy bigram model (``toy-bigram``), ``production`` on version 1."""
    folder = tmp_path_factory.mktemp("serving")
    for seed in (5, 6):
        spec = toy_spec("toy", seed=seed, registry=folder / "registry", baseline=False, training={"epochs": 1})
        result = run_cli("run", str(write_spec(folder / f"s{seed}.toml", to_toml(spec))), "--out",
                         str(folder / f"run{seed}"), env=TESTKIT_ENV)  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert run_cli("models", "--registry", str(folder / "registry"), "alias", "toy-bigram:1", "production").returncode == 0
    return folder / "registry"


@pytest.fixture
def client(registry: Path, toy_plugins) -> TestClient:
    from recplug._model_registry import ModelRegistry

    options = ServeOptions(ref="toy-bigram@production", registry=str(registry), poll_seconds=0, max_history=50,
                           max_k=20, max_requests=4, max_body_bytes=4_000)  # fmt: skip
    holder = ModelHolder(ModelRegistry(registry), options.ref)
    with TestClient(create_app(options, holder)) as test_client:
        yield test_client


def test_recommend_for_a_known_user_a_history_and_a_batch(client: TestClient) -> None:
    known = client.post("/recommend", json={"user_id": 3, "k": 5})
    assert known.status_code == 200
    body = known.json()
    assert body["model"] == "toy-bigram:1" and len(body["recommendations"]) == 5
    scores = [r["score"] for r in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    new = client.post("/recommend", json={"history": [5, 15], "k": 3, "exclude": ["25"]})  # ids as text work too
    assert [r["item_id"] for r in new.json()["recommendations"]] and all(
        r["item_id"] not in (5, 15, 25) for r in new.json()["recommendations"])  # fmt: skip
    requests = [{"user_id": 3, "k": 5}, {"history": [5, 15], "k": 3, "exclude": ["25"]}]
    batch = client.post("/recommend/batch", json={"requests": requests})
    assert batch.status_code == 200
    assert batch.json()["results"] == [body["recommendations"], new.json()["recommendations"]]  # batched or alone


def test_the_model_endpoints_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["model"] == "toy-bigram:1"
    models = client.get("/models").json()
    assert models["serving"] == {"ref": "toy-bigram@production", "version": "toy-bigram:1"}
    assert {(m["name"], m["version"]) for m in models["models"]} == {("toy-bigram", 1), ("toy-bigram", 2)}
    one = client.get("/models/toy-bigram").json()
    assert [v["version"] for v in one["versions"]] == [1, 2] and one["versions"][0]["aliases"] == ["production"]
    schema = client.get("/openapi.json").json()
    def resolve(path: str, part: dict) -> dict:
        name = part["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        return schema["components"]["schemas"][name]

    post = schema["paths"]["/recommend"]["post"]
    assert {"user_id", "history", "k", "exclude", "user_features"} <= set(resolve("/recommend", post["requestBody"])["properties"])
    assert set(resolve("/recommend", post["responses"]["200"])["properties"]) == {"model", "recommendations"}
    assert set(resolve("/recommend", post["responses"]["4XX"])["properties"]) == {"error", "field"}
    assert "/recommend/batch" in schema["paths"] and "/models/{name}" in schema["paths"]
    assert "swagger-ui" in client.get("/docs").text


BAD_REQUESTS = [
    ("/recommend", b'{"user_id": 3, "k": 3', 400, None),
    ("/recommend", b"", 422, None),
    ("/recommend", b"[1, 2]", 422, None),
    ("/recommend", {"k": 5}, 422, "user_id"),
    ("/recommend", {"user_id": 99999}, 404, "user_id"),
    ("/recommend", {"user_id": "somebody"}, 404, "user_id"),
    ("/recommend", {"user_id": [3]}, 422, "user_id"),
    ("/recommend", {"user_id": 3, "k": 0}, 422, "k"),
    ("/recommend", {"user_id": 3, "k": 21}, 422, "k"),
    ("/recommend", {"user_id": 3, "k": "ten"}, 422, "k"),
    ("/recommend", {"user_id": 3, "kk": 3}, 422, "kk"),
    ("/recommend", {"history": "5, 15"}, 422, "history"),
    ("/recommend", {"history": [5, None]}, 422, "history.1"),
    ("/recommend", {"history": [5, 999999]}, 422, "history"),
    ("/recommend", {"history": [5] * 51}, 422, "history"),
    ("/recommend", {"history": [5], "exclude": [7]}, 422, "exclude"),
    ("/recommend", {"user_id": 3, "user_features": {"group": "a"}}, 422, "user_features"),
    ("/recommend", {"history": [5], "user_features": {"group": ["a"]}}, 422, "user_features.group"),
    ("/recommend", b'{"history": [' + b"5, " * 2_000 + b"5]}", 413, None),
    ("/recommend/batch", {"requests": []}, 422, "requests"),
    ("/recommend/batch", {"requests": [{"user_id": 3}] * 5}, 422, "requests"),
    ("/recommend/batch", {"requests": [{"user_id": 3}, {"history": [999999]}]}, 422, "requests.1.history"),
    ("/recommend/batch", [{"user_id": 3}], 422, None),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD_REQUESTS)
def test_a_bad_request_is_a_4xx_naming_the_field(client: TestClient, path: str, body: object, status: int,
                                                 field: str | None) -> None:  # fmt: skip
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["field"] == field and payload["error"] and "Traceback" not in response.text


def test_unknown_model_names_and_paths_are_refused(client: TestClient) -> None:
    assert client.get("/models/nothing-here").status_code == 404
    assert client.get("/models/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/recommend").status_code == 405


def test_requests_arriving_together_share_a_forward_pass(registry: Path, toy_plugins) -> None:
    from recplug._model_registry import ModelRegistry

    options = ServeOptions(ref="toy-bigram:2", registry=str(registry), poll_seconds=0, batch_window_ms=200)
    with TestClient(create_app(options, ModelHolder(ModelRegistry(registry), options.ref))) as test_client:
        answers: list[int] = []
        threads = [threading.Thread(target=lambda u=u: answers.append(
            test_client.post("/recommend", json={"user_id": u}).status_code)) for u in range(1, 13)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ready = test_client.get("/ready").json()
    assert answers == [200] * 12
    assert ready["scored"] == 12 and ready["batches"] < 12  # a 200 ms window gathers several requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(registry: Path, ref: str, *options: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "recplug", "serve", ref, "--registry", str(registry), "--port",
                               str(port), *options], env={**os.environ, **TESTKIT_ENV}, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            if server.poll() is not None:
                pytest.fail(f"the server exited: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.1)
    server.kill()
    pytest.fail("the server did not become ready in 60 s")


def test_moving_the_alias_switches_versions_under_load_without_a_failed_request(registry: Path) -> None:
    server, url = start_server(registry, "toy-bigram@production", "--poll-seconds", "0.2")
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                response = http.post(f"{url}/recommend", json={"user_id": 3, "k": 5})
                statuses.append(response.status_code)
                versions.append(response.json().get("model", "?"))

    workers = [threading.Thread(target=client) for _ in range(4)]
    try:
        for w in workers:
            w.start()
        time.sleep(1.0)
        assert run_cli("models", "--registry", str(registry), "alias", "toy-bigram:2", "production").returncode == 0
        deadline = time.time() + 30
        while time.time() < deadline and (not versions or versions[-1] != "toy-bigram:2"):
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join()
        serving = httpx.get(f"{url}/models").json()["serving"]
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=60)
        run_cli("models", "--registry", str(registry), "alias", "toy-bigram:1", "production")
    assert statuses and set(statuses) == {200}  # not one request failed across the switch
    assert versions[0] == "toy-bigram:1" and versions[-1] == "toy-bigram:2"
    assert versions.index("toy-bigram:2") > versions.index("toy-bigram:1")
    assert "toy-bigram:1" not in versions[versions.index("toy-bigram:2") + 8 :]  # switched for good
    assert serving == {"ref": "toy-bigram@production", "version": "toy-bigram:2"}


def test_sigterm_finishes_the_requests_in_flight(registry: Path) -> None:
    server, url = start_server(registry, "toy-bigram:1", "--batch-window-ms", "1500")
    results: list[int] = []

    def ask(user: int) -> None:
        results.append(httpx.post(f"{url}/recommend", json={"user_id": user}, timeout=60).status_code)

    asking = [threading.Thread(target=ask, args=(u,)) for u in range(1, 9)]
    for t in asking:
        t.start()
    time.sleep(0.5)  # the requests wait in the 1.5 s batch window
    server.send_signal(signal.SIGTERM)
    for t in asking:
        t.join()
    _, log = server.communicate(timeout=60)
    assert results == [200] * 8  # every request in flight was answered
    assert server.returncode == -signal.SIGTERM and "Traceback" not in log  # then it ends as the signal asked


def test_without_the_extra_serve_says_how_to_install_it(tmp_path: Path) -> None:
    code = "import sys; sys.modules['fastapi'] = None; from recplug.cli import main; sys.exit(main(['serve', 'm']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "recplug: error: serve: recplug serve needs FastAPI and uvicorn: pip install 'recplug[serve]'"


def test_it_binds_to_this_machine_only_unless_told() -> None:
    from recplug.cli import build_parser

    assert build_parser().parse_args(["serve", "m"]).host == "127.0.0.1" == ServeOptions(ref="m").host
