"""The event loop under promotions: its longest stall while 32 run at once, and whether the web process grows.

    .venv/bin/python -m bench.stall            # 32 one-minute WebM recordings confirmed at once, 3 times
    .venv/bin/python -m bench.stall --quick    # 8 at once, once

The service runs as ``soundpost serve`` would, but on asyncio's own event loop with
every callback timed (``watched`` below): the longest one, in wall-clock time, is the
loop's longest stall. Not debug mode, which records a stack for every handle and
future and so inflates the very callbacks it reports (by 2 to 4 times here), and not
uvloop, which cannot be timed per callback; uvloop runs the same Python callbacks
with its transports in C, so the figure is an upper bound for production's loop.
The store (``--store``: radosgw's processes, or moto in this process; bench/stores.py)
and the clients run at the lowest priority (``yield_the_cpu``). The web process's
resident memory is read before the first wave and after each.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench import stores
from bench.promotion import make_file, upload
from bench.run import Server, rss_mb, sign_in, stack

SLOW = re.compile(r"took (\d+\.\d+) seconds")


def watched(host: str, port: int) -> None:
    """Serve the app on asyncio's loop, logging each callback over 1 ms as debug mode would (in the server's process)."""
    import asyncio.events

    import uvicorn

    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        start = time.perf_counter()
        run(handle)
        took = time.perf_counter() - start
        if took > 0.001:
            sys.stderr.write(f"Executing {handle!r:.200} took {took:.4f} seconds\n")

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    config = uvicorn.Config(
        "service.app:create_app", factory=True, host=host, port=port, loop="none", log_level="warning"
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(uvicorn.Server(config).serve())


class Stalls:
    """The server's stderr, read as it comes: the durations of the slow callbacks asyncio reported."""

    def __init__(self, stream: object) -> None:
        self.seconds: list[float] = []
        self.thread = threading.Thread(target=self.read, args=(stream,), daemon=True)
        self.thread.start()

    def read(self, stream: object) -> None:
        for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
            found = SLOW.search(line.decode(errors="replace"))
            if found:
                self.seconds.append(float(found[1]))

    def take(self) -> list[float]:
        taken, self.seconds = self.seconds, []
        return taken


@contextlib.contextmanager
def service(env: dict[str, str], store: stores.Store) -> Iterator[tuple[Server, Stalls]]:
    server = Server("soundpost (watched)", [], {**env, "SOUNDPOST_CONFIRM_RATE_LIMIT": "1000000/second"})
    command = [sys.executable, "-c", f"from bench.stall import watched; watched('127.0.0.1', {server.port})"]
    process = subprocess.Popen(
        command,
        env={**os.environ, **server.env, "SOUNDPOST_PUBLIC_URL": server.url},
        stderr=subprocess.PIPE,
    )
    server.process = process
    stalls = Stalls(process.stderr)
    for _ in range(300):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                break
        if process.poll() is not None:
            raise SystemExit(f"the watched server exited with {process.returncode}")
        time.sleep(0.2)
    yield_the_cpu(store.pids)
    try:
        yield server, stalls
    finally:
        server.stop()


def yield_the_cpu(store_pids: tuple[int, ...]) -> None:
    """Every thread of this process (moto, clients) and of the store's at the lowest priority; not the server's.

    In production the store and the browsers are other machines; here they share the
    server's two cores, and a server thread waiting for a core behind the store's is a
    stall of the harness, not of the service. Threads started later inherit the priority.
    """
    for pid in ("self", *store_pids):
        for thread in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(thread), 19)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 at once, one wave")
    parser.add_argument("--at-once", type=int, default=32)
    parser.add_argument("--waves", type=int, default=3)
    stores.add_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.at_once, args.waves = 8, 1
    with (
        tempfile.TemporaryDirectory() as scratch,
        stores.started(args.store) as store,
        stack({}, store.endpoint) as env,
        service(env, store) as (server, stalls),
    ):
        path = make_file(Path(scratch), "webm")
        cookie = sign_in(server.url)
        assert server.process is not None
        rss = [rss_mb(server.process.pid)]
        longest: list[float] = []
        with httpx.Client(base_url=server.url, headers={"Cookie": cookie}, timeout=300) as client:
            origin = {"Origin": server.url}
            warm = upload(client, path, "audio/webm")  # starts the fork server outside the measured waves
            assert client.post(f"/api/uploads/{warm}/confirm", headers=origin).status_code == 200
            for _ in range(args.waves):
                ids = [upload(client, path, "audio/webm") for _ in range(args.at_once)]
                stalls.take()

                def confirm(upload_id: str) -> int:
                    return client.post(f"/api/uploads/{upload_id}/confirm", headers=origin).status_code

                with concurrent.futures.ThreadPoolExecutor(args.at_once) as pool:
                    statuses = list(pool.map(confirm, ids))
                assert statuses == [200] * args.at_once, statuses
                longest.append(max(stalls.take(), default=0.0))
                rss.append(rss_mb(server.process.pid))
    print(
        f"{args.at_once} one-minute WebM recordings confirmed at once, {args.waves} times, against {store.name}:"
    )
    print("| wave | longest stall ms | web process MB after |")
    print("| ---: | ---: | ---: |")
    print(f"| before | | {rss[0]:.0f} |")
    for number, (stall, size) in enumerate(zip(longest, rss[1:], strict=True), 1):
        print(f"| {number} | {1000 * stall:.1f} | {size:.0f} |")
    print(
        f"\n- longest stall: {1000 * max(longest):.1f} ms (goal: at most 5 ms; asyncio's loop, an upper bound)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
