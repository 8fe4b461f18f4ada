#!/usr/bin/env python3
"""Soak: mixed traffic against one real ``soundpost serve`` process for a while; errors and memory growth.

Everything runs on 127.0.0.1: moto (the S3 stand-in) and the dev identity
provider (oidc-provider-mock) in this process, the app in a process of its own.
It signs in ``--users`` users, then ``--connections`` workers, each with its own
keep-alive connection and session, loop through sign-in, presign, upload to the
S3 stand-in, confirm and list until ``--seconds`` pass or ``--max-requests``
have been sent. It reports requests per kind, answers that were not the expected
ones (by kind and status; 5xx separately), and the server's resident memory at
start, middle and end. Exit status 1 when anything unexpected was answered.

    python3 bench/soak.py --seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import multiprocessing
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402 - after the path set-up, so the script runs from anywhere

from service import devstack  # noqa: E402
from service.core.budgets import BUDGETS  # noqa: E402
from tests.support.audio_samples import wav  # noqa: E402

# What each kind of request answers when all is well.
EXPECTED = {"sign_in": 303, "presign": 200, "s3_upload": 201, "confirm": 200, "list": 200}
SIGN_IN_EVERY = 20  # iterations between a worker's fresh sign-ins
TAKE = wav(0.25)


@dataclass
class Options:
    seconds: float = 60
    connections: int = 64
    users: int = 8
    max_requests: int = 1_000_000


@dataclass
class Report:
    seconds: float
    connections: int
    requests: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(
        default_factory=dict
    )  # "kind status" -> count (transport errors as "kind error")
    server_errors: int = 0  # 5xx from Soundpost itself
    rss_kib: dict[str, int] = field(default_factory=dict)  # start, middle, end, peak

    @property
    def ok(self) -> bool:
        return not self.unexpected and self.server_errors == 0


@dataclass
class Tally:
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: int = 0
    budget: int = 0

    def spend(self) -> bool:
        """One more request, if the count bound allows it."""
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def record(self, kind: str, status: int | None, ours: bool = True) -> bool:
        self.requests[kind] += 1
        if status == EXPECTED[kind]:
            return True
        self.unexpected[f"{kind} {status or 'error'}"] += 1
        if ours and status is not None and status >= 500:
            self.server_errors += 1
        return False


def rss_kib(pid: int) -> int:
    """Resident memory of one process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sign_in(client: httpx.AsyncClient, user: str) -> int | None:
    """The browser's sign-in through oidc-provider-mock; the app's last answer (303 when signed in)."""
    try:
        login = await client.get("/auth/login")
        if login.status_code != 302:
            return login.status_code
        approved = await client.post(login.headers["location"], data={"sub": user})
        if approved.status_code != 302:
            return None  # the provider's problem, not ours
        callback = httpx.URL(approved.headers["location"])
        done = await client.get(f"{callback.path}?{callback.query.decode()}")
        return done.status_code
    except httpx.HTTPError:
        return None


class Worker:
    """One connection's worth of a user's traffic."""

    def __init__(self, url: str, user: str, s3: httpx.AsyncClient, tally: Tally) -> None:
        origin = {"Origin": url, "Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
        self.client = httpx.AsyncClient(
            base_url=url, headers=origin, timeout=60, limits=httpx.Limits(max_connections=1)
        )
        self.user, self.s3, self.tally = user, s3, tally
        self.deadline = 0.0  # set when the clock starts

    def going(self) -> bool:
        """Whether one more request may be sent (and, if so, it is counted against the budget)."""
        return time.monotonic() < self.deadline and self.tally.spend()

    async def call(self, kind: str, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        try:
            answer = await self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError:
            self.tally.record(kind, None)
            return None
        return answer if self.tally.record(kind, answer.status_code) else None

    async def upload_once(self, n: int) -> bool:
        """Presign, POST the bytes to S3, confirm; False once time or the request budget ran out."""
        if not self.going():
            return False
        signed = await self.call(
            "presign",
            "POST",
            "/api/upload/presigned-url",
            json={"filename": f"soak-{n}.wav", "contentType": "audio/wav", "size": len(TAKE)},
        )
        if signed is None:
            return True
        body = signed.json()
        if not self.going():
            return False
        try:
            stored = await self.s3.post(
                body["url"], data=body["fields"], files={"file": (f"soak-{n}.wav", TAKE, "audio/wav")}
            )
            status: int | None = stored.status_code
        except httpx.HTTPError:
            status = None
        if not self.tally.record("s3_upload", status, ours=False):
            return True
        if not self.going():
            return False
        await self.call("confirm", "POST", f"/api/uploads/{body['key'].split('/')[-2]}/confirm")
        return True

    async def run(self) -> None:
        """Until time or the request budget runs out: upload, confirm, list, and now and then sign in again."""
        for n in itertools.count(1):
            if n % SIGN_IN_EVERY == 0:
                if not self.going():
                    return
                self.tally.record("sign_in", await sign_in(self.client, self.user))
            if not await self.upload_once(n) or not self.going():
                return
            await self.call("list", "GET", "/api/uploads", params={"limit": 20})


async def drive(url: str, pid: int, options: Options) -> Report:
    tally = Tally(budget=options.max_requests)
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=options.connections))
        )
        workers = [
            Worker(url, f"soak-user-{i % options.users}", s3, tally) for i in range(options.connections)
        ]
        for worker in workers:
            await stack.enter_async_context(worker.client)
        # Every connection signs in first (counted, but before the clock starts), a few at a time.
        gate = asyncio.Semaphore(8)

        async def first_sign_in(worker: Worker) -> int | None:
            async with gate:
                return await sign_in(worker.client, worker.user)

        for result in await asyncio.gather(*(first_sign_in(w) for w in workers if tally.spend())):
            tally.record("sign_in", result)
        return await soak(workers, tally, pid, options)


async def soak(workers: list[Worker], tally: Tally, pid: int, options: Options) -> Report:
    started = time.monotonic()
    deadline = started + options.seconds
    rss = {"start": rss_kib(pid)}
    peak = rss["start"]

    async def watch() -> None:
        nonlocal peak
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            peak = max(peak, rss_kib(pid))
            if "middle" not in rss and time.monotonic() >= started + options.seconds / 2:
                rss["middle"] = rss_kib(pid)

    for worker in workers:
        worker.deadline = deadline
    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(w.run() for w in workers))
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    rss.setdefault("middle", rss_kib(pid))
    rss["end"] = rss_kib(pid)
    rss["peak"] = max(peak, rss["end"])
    return Report(
        seconds=round(time.monotonic() - started, 1),
        connections=options.connections,
        requests=dict(tally.requests),
        unexpected=dict(tally.unexpected),
        server_errors=tally.server_errors,
        rss_kib=rss,
    )


def _serve_stand_ins(origin: str, ready: Connection, stop: EventType) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto and the provider log every request
    with devstack.moto_s3() as s3, devstack.dev_identity_provider() as issuer:
        devstack.create_bucket(s3, devstack.DEV_BUCKET, [origin])
        ready.send((s3, issuer))
        stop.wait()


@contextlib.contextmanager
def stand_ins(origin: str) -> Iterator[tuple[devstack.S3Endpoint, str]]:
    """moto and the dev identity provider in a process of their own, so they do not share this one's GIL."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    stop = context.Event()
    process = context.Process(target=_serve_stand_ins, args=(origin, send, stop), daemon=True)
    process.start()
    try:
        if not receive.poll(120):
            raise RuntimeError("the S3 stand-in and identity provider did not start")
        endpoints: tuple[devstack.S3Endpoint, str] = receive.recv()
        yield endpoints
    finally:
        stop.set()
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


def run(options: Options) -> Report:
    """Start moto, the dev identity provider and ``soundpost serve``; soak it; stop them all."""
    port = devstack.free_port()
    with stand_ins(f"http://127.0.0.1:{port}") as (s3, issuer):
        env = {
            **devstack.dev_environment(f"http://127.0.0.1:{port}", s3, issuer),
            **{f"SOUNDPOST_{budget.setting}": "1000000/minute" for budget in BUDGETS},
        }  # the soak measures the service, not its limiter
        with devstack.soundpost_serve(env, port) as server:
            return asyncio.run(drive(server.url, server.process.pid, options))


def describe(report: Report) -> str:
    rss = report.rss_kib
    lines = [
        f"soak: {report.seconds}s, {report.connections} connections, {sum(report.requests.values())} requests",
        "requests: " + ", ".join(f"{kind} {count}" for kind, count in sorted(report.requests.items())),
        "unexpected answers: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report.unexpected.items())) or "none"),
        f"5xx from Soundpost: {report.server_errors}",
        "server RSS (MiB): " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in rss.items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long to run (default 60)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--users", type=int, default=8, help="distinct users signed in (default 8)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 24 * 3600 or not 1 <= args.connections <= 1024 or args.users < 1:
        parser.error("--seconds must be up to a day, --connections 1 to 1024, --users at least 1")
    report = run(Options(args.seconds, args.connections, args.users, args.max_requests))
    print(json.dumps(asdict(report), indent=2) if args.json else describe(report), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
