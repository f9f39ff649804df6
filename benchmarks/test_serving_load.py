"""Serving the ML-1M leave-one-out transformer: `recplug serve` under load over real HTTP, and the bulk export.

The model has the architecture of examples/ml1m-loo-fast.toml (context 100, D 64, 2 blocks, tied output) over the
real ML-1M vocabulary; its weights are fresh (speed does not depend on them). A server runs on 127.0.0.1 in its
own process; an aiohttp client sends ``{"user_id": ..., "k": 10}`` at concurrency 1, 8 and 64, bounded in count
and time. Asserted: no request fails, and at concurrency 64 the server answers at least 5x the requests per second
of one request per call (``ServedModel.recommend`` in a loop), measured in the same run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recplug._components import RunContext
from recplug._model_registry import ModelRegistry, ServedModel
from recplug._plugin_manager import get_plugin_manager
from recplug._spec import ComponentSpec, read_toml
from recplug_movielens import MovieLens, MovieLensOptions

pytestmark = pytest.mark.realdata
aiohttp = pytest.importorskip("aiohttp", reason="the load test's client (recplug[dev]) is not installed")
pytest.importorskip("fastapi", reason="recplug[serve] is not installed (CI installs it)")

REPO = Path(__file__).resolve().parents[1]
LEVELS = {1: 300, 8: 1500, 64: 6000}
"""Requests sent at each concurrency (each level also stops after 30 s)."""
MIN_SPEEDUP_AT_64 = 5.0


@pytest.fixture(scope="module")
def loo_model(real_ml1m: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ServedModel]:
    """The LOO-fast transformer registered as ``loo-bench`` in a fresh registry."""
    plugins = get_plugin_manager()
    data = MovieLens(MovieLensOptions(data_dir=str(real_ml1m), cache=False)).load(RunContext())
    table = read_toml(REPO / "examples" / "ml1m-loo-fast.toml")["recommenders"]["transformer"]
    spec = ComponentSpec.from_table("transformer", table, ("model",), "recommender", plugins, "transformer")
    model = spec.build(plugins)
    model.prepare(data)
    model.module.eval()
    registry = ModelRegistry(tmp_path_factory.mktemp("registry"))
    registry.register("loo-bench", model, provenance=spec.provenance(plugins), spec={}, data=data, metrics={},
                      protocol={})  # fmt: skip
    return registry.root, registry.load("loo-bench")


def one_request_per_call(served: ServedModel, users: list[int]) -> float:
    """Requests per second of ``ServedModel.recommend``, one user per call (after a warm-up)."""
    for user in users[:20]:
        served.recommend(user_id=user, k=10)
    started = time.perf_counter()
    for user in users:
        served.recommend(user_id=user, k=10)
    return len(users) / (time.perf_counter() - started)


async def load(port: int, users: list[int], concurrency: int, count: int, limit_s: float = 30.0) -> dict[str, float]:
    """``count`` requests from ``concurrency`` clients (or fewer, when ``limit_s`` passes); rate and latencies.
    Each client first opens its connection with a few unmeasured requests."""
    latencies: list[float] = []
    failures = 0
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def ask(user: int) -> bool:
            async with session.post(f"http://127.0.0.1:{port}/recommend", json={"user_id": user, "k": 10}) as r:
                body = await r.json()
                return r.status == 200 and len(body["recommendations"]) == 10

        async def client(deadline: float) -> None:
            nonlocal sent, failures
            while sent < count and time.perf_counter() < deadline:
                user = users[sent % len(users)]
                sent += 1
                started = time.perf_counter()
                failures += not await ask(user)
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(ask(users[i % len(users)]) for i in range(3 * concurrency)))  # connections open
        gc.collect()
        gc.freeze()  # this process holds ML-1M and pytest: a full collection would pause the client, not the server
        started = time.perf_counter()
        await asyncio.gather(*(client(started + limit_s) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "failures": failures,
            "rate": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(registry: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "recplug", "serve", "loo-bench", "--registry", str(registry), "--port", str(port),
         "--poll-seconds", "0"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {server.stderr.read() if server.stderr else ''}") from None
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start within 60 s")


@pytest.mark.benchmark(group="serving")
def test_http_serving_under_load(benchmark, loo_model) -> None:
    registry, served = loo_model
    users = np.random.default_rng(0).permutation(served.vocab.user_ids)[:2000].tolist()
    single = one_request_per_call(served, users[:300])
    port = free_port()
    server = start_server(registry, port)
    try:
        asyncio.run(load(port, users, 8, 200))  # warm-up
        results = [asyncio.run(load(port, users, c, n)) for c, n in LEVELS.items() if c != 64]
        results.append(benchmark.pedantic(lambda: asyncio.run(load(port, users, 64, LEVELS[64])), rounds=1, iterations=1))
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"\none request per call (ServedModel.recommend): {single:.0f} requests/s")
    for r in results:
        print(f"concurrency {r['concurrency']:>2}: {r['requests']} requests, {r['rate']:.0f} requests/s, "
              f"p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
              f"{r['failures']} failed")  # fmt: skip
    at_64 = results[-1]
    benchmark.extra_info.update({"one_per_call_rps": single, **{f"c{r['concurrency']}_{k}": r[k] for r in results
                                                                for k in ("rate", "p50_ms", "p99_ms")}})  # fmt: skip
    assert all(r["failures"] == 0 for r in results)
    assert at_64["rate"] >= MIN_SPEEDUP_AT_64 * single, f"{at_64['rate']:.0f} vs {single:.0f} requests/s"


@pytest.mark.benchmark(group="serving")
def test_bulk_export_of_every_user(benchmark, loo_model) -> None:
    """Every ML-1M user's top 100 in one vectorised pass (what ``recommend --all-users`` writes)."""
    _, served = loo_model
    frame = benchmark.pedantic(lambda: served.recommend_all(100), rounds=3, warmup_rounds=1)
    assert len(frame) == 100 * served.vocab.n_users
    if benchmark.stats:  # None under --benchmark-disable, which runs it once untimed
        print(f"\nbulk export: {served.vocab.n_users} users x 100 in {benchmark.stats.stats.min:.2f} s (best of 3)")
