#!/usr/bin/env python3
"""CPU per request through the whole ASGI stack, in-process: no sockets, no load generator.

    python bench/inproc.py                 # µs of CPU per request for each target
    python bench/inproc.py --profile presign   # the same loop under cProfile
    python bench/inproc.py --redis         # adds presign with its budgets in Redis (a redis-server of its own)

On a shared machine wall-clock load tests are noisy; process CPU time over a loop
of calls is a steadier way to compare two versions of the code. Each request is a
raw ASGI call (scope, receive, send) on one event loop, signed in with a session
cookie made the way SessionMiddleware makes it. S3 is never contacted: presigning
is local and the clients only connect when a request needs them. With ``--redis``
the ``presign_redis`` target (budgets leased from Redis, the default share) and
``presign_redis_exact`` (no leases: one round trip per request) run against a
redis-server this script starts, whose CPU per request is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.types import ASGIApp, Message

from bench.apps import ceiling
from bench.redis_server import RedisServer, redis_server
from bench.run import BENCH_RATE_LIMIT, PARAMS_QUERY, PRESIGN_BODY
from bench.sessions import session_cookie
from service.app import create_app

SECRET = "inproc-benchmark-session-secret-0123456789abcdef"
SETTINGS = {
    "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000",
    "SOUNDPOST_SESSION_SECRET": SECRET,
    "SOUNDPOST_PROVIDERS": "dev",
    "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
    "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost",
    "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "secret",
    "SOUNDPOST_S3_ENDPOINT": "http://127.0.0.1:9",
    "SOUNDPOST_S3_BUCKET": "bench",
    "SOUNDPOST_S3_ACCESS_KEY_ID": "testing",
    "SOUNDPOST_S3_SECRET_ACCESS_KEY": "testing",
    "SOUNDPOST_RATE_LIMIT": BENCH_RATE_LIMIT,
    "SOUNDPOST_MAX_PENDING_UPLOADS": "0",  # one user, never uploading: as bench/run.py
}


COOKIE = session_cookie(SECRET, "alice").encode()  # one session for the whole run, as a browser keeps it


def scope(
    method: str, path: str, query: bytes = b"", body: bytes = b"", cookie: bool = True
) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"inproc"), (b"accept", b"*/*")]
    if cookie:
        headers.append((b"cookie", COOKIE))
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def caller(
    app: ASGIApp,
    template: dict[str, Any],
    body: bytes,
    state: dict[str, Any] | None = None,
) -> Callable[[], Awaitable[int]]:
    """One request per call, with the lifespan's state as uvicorn gives it; returns the status."""
    state = state or {}

    async def call() -> int:
        sent = False
        status = 0

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(template, headers=list(template["headers"]), state=state.copy()), receive, send)
        return status

    return call


def targets(app: ASGIApp, bare: ASGIApp, state: dict[str, Any]) -> dict[str, Callable[[], Awaitable[int]]]:
    """The benchmark's targets, with the same requests bench/run.py sends; ``state`` is app's lifespan state."""
    body = PRESIGN_BODY.encode()
    path, _, query = PARAMS_QUERY.partition("?")
    return {
        "ceiling": caller(bare, scope("GET", "/", cookie=False), b""),
        "healthz": caller(app, scope("GET", "/healthz", cookie=False), b"", state),
        "me": caller(app, scope("GET", "/api/me"), b"", state),
        "presign": caller(app, scope("POST", "/api/upload/presigned-url", body=body), body, state),
        "params": caller(app, scope("GET", path, query.encode()), b"", state),
    }


async def measure(
    call: Callable[[], Awaitable[int]], n: int, redis: RedisServer | None = None
) -> tuple[float, float]:
    """CPU µs per call over ``n`` calls, after a warm-up: this process's, and redis-server's (0 without)."""
    for _ in range(200):
        status = await call()
    if status != 200:
        raise SystemExit(f"target answered {status}")
    redis_before = redis.cpu_seconds() if redis else 0.0
    started = time.process_time()
    for _ in range(n):
        await call()
    spent = time.process_time() - started
    redis_spent = redis.cpu_seconds() - redis_before if redis else 0.0
    return spent / n * 1e6, redis_spent / n * 1e6


@contextlib.asynccontextmanager
async def redis_targets(redis: RedisServer) -> AsyncIterator[dict[str, Callable[[], Awaitable[int]]]]:
    """Presign with its budgets in Redis: leased (the default share), and exact (a round trip each)."""
    body = PRESIGN_BODY.encode()
    calls = {}
    async with contextlib.AsyncExitStack() as stack:
        for name, percent in (("presign_redis", None), ("presign_redis_exact", "0")):
            env = {**SETTINGS, "SOUNDPOST_REDIS_URL": redis.url}
            if percent is not None:
                env["SOUNDPOST_REDIS_LEASE_PERCENT"] = percent
            app = create_app(env)
            state = await stack.enter_async_context(app.router.lifespan_context(app))
            template = scope("POST", "/api/upload/presigned-url", body=body)
            calls[name] = caller(app, template, body, dict(state or {}))
        yield calls


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5000, help="requests per target per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", metavar="TARGET", help="profile one target instead")
    parser.add_argument(
        "--only", nargs="+", metavar="TARGET", help="measure these targets only (and the ceiling)"
    )
    parser.add_argument("--sort", default="tottime", help="cProfile sort key for --profile")
    parser.add_argument("--redis", action="store_true", help="add the presign targets with budgets in Redis")
    args = parser.parse_args(argv)
    app = create_app(SETTINGS)
    async with contextlib.AsyncExitStack() as stack:
        state = await stack.enter_async_context(app.router.lifespan_context(app))
        calls = targets(app, ceiling(), dict(state or {}))
        redis = stack.enter_context(redis_server()) if args.redis else None
        if redis is not None:
            calls |= await stack.enter_async_context(redis_targets(redis))
        if args.profile:
            call = calls[args.profile]
            await measure(call, 100)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.n):
                await call()
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)
            return
        if args.only:
            calls = {name: call for name, call in calls.items() if name == "ceiling" or name in args.only}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                results[name].append(await measure(call, args.n, redis if "redis" in name else None))
        base = min(results["ceiling"])[0]
        print(f"{'target':<20} {'min µs':>8} {'median µs':>10} {'× ceiling CPU':>14} {'Redis µs':>9}")
        for name, values in results.items():
            values.sort()
            low, middle = values[0][0], values[len(values) // 2][0]
            redis_cpu = sorted(r for _, r in values)[len(values) // 2]
            print(f"{name:<20} {low:>8.1f} {middle:>10.1f} {low / base:>14.2f} {redis_cpu:>9.1f}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1:]))
