#!/usr/bin/env python3
"""Soundpost's benchmark: ``python3 run.py bench`` (``--quick`` for a smoke run, ``--help`` for more).

Everything runs on 127.0.0.1: an S3 stand-in (moto), the dev identity provider,
and each target served by uvicorn in its own process with the same settings
(uvloop, httptools, one worker unless said otherwise, no access log), each
worker pinned to a core, wrk and a redis-server (for the targets whose budgets
live in Redis) pinned to another. The
benchmark signs in for real through the identity provider, checks that a
presigned POST really uploads, then loads every target with wrk in turn, round
after round, and reports medians: requests/s, p50, p99, errors, server CPU per
request, and each target's ratio to the bare-Starlette ceiling. A micro-benchmark
of the presign function alone follows (bench/micro.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402 - imported after the path set-up, so the script runs from anywhere

from bench import micro, stores  # noqa: E402
from bench.redis_server import RedisServer, redis_server  # noqa: E402
from bench.sessions import session_cookie  # noqa: E402
from service import devstack  # noqa: E402

LUA = Path(__file__).with_name("load.lua")
RESULTS = Path(__file__).with_name("results")
PRESIGN_BODY = json.dumps({"filename": "take.wav", "contentType": "audio/wav", "size": 1000})
PARAMS_QUERY = "/s3/params?filename=take.wav&type=audio%2Fwav&metadata%5Bsize%5D=1000"
TICKS = os.sysconf("SC_CLK_TCK")
BENCH_RATE_LIMIT = "1000000/second"
# The many-user targets: the default budgets and pending cap (the stack lifts both for its one user),
# and enough users that none comes near either in a run.
DEFAULT_LIMITS = {
    "SOUNDPOST_RATE_LIMIT": "",
    "SOUNDPOST_MAX_PENDING_UPLOADS": "",
    "SOUNDPOST_RESERVATION_TTL": "10",
}
USERS = 10_000
CORES = sorted(os.sched_getaffinity(0))
# One-worker servers on the first core; wrk and redis-server on the last (a second worker shares it).
SERVER_CORE, LOAD_CORE = CORES[0], CORES[-1]


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """The pid and all its descendants (uvicorn's workers are children of its supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process tree."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    redis: RedisServer | None = None
    pinned: bool = True  # each worker on a core of its own (see pin)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            *self.command,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
        ]
        env = {**os.environ, **self.env, "SOUNDPOST_PUBLIC_URL": self.url}
        self.process = subprocess.Popen(args, cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/healthz", timeout=1)
                if self.workers == 1 or len(process_tree(self.process.pid)) > self.workers:
                    if self.pinned:
                        self.pin()
                    return
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start listening on {self.url}")

    def pin(self) -> None:
        """Each worker on a core of its own: one worker on the server core, more spread over the cores."""
        assert self.process is not None
        for member in process_tree(self.process.pid):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(member, {SERVER_CORE})
        for index, pid in enumerate(self.worker_pids()):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, {CORES[index % len(CORES)]})

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        tree = process_tree(self.process.pid)
        # One worker runs in uvicorn's own process; more are its children (after a resource tracker).
        return tree[:1] if self.workers == 1 else [p for p in tree[1:] if _is_python_worker(p)]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _is_python_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "multiprocessing.resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
    return False


# ---------------------------------------------------------------- sign-in and checks


def sign_in(base_url: str) -> str:
    """Sign in as alice through the dev identity provider, as a browser would; returns the Cookie header."""
    with httpx.Client(base_url=base_url, timeout=10) as browser:
        login = browser.get("/auth/login")
        assert login.status_code == 302, login.text
        authorize = login.headers["location"]
        approved = httpx.post(authorize, data={"sub": "alice"}, timeout=10)
        assert approved.status_code == 302, approved.text
        landing = browser.get(approved.headers["location"].replace(base_url, ""))
        assert landing.status_code == 303, landing.text
        me = browser.get("/api/me")
        assert me.status_code == 200 and me.json()["subject"] == "alice", me.text
        return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def check_upload(base_url: str, cookie: str, path: str, method: str) -> int:
    """One signed-in presign, then the real upload it allows; the HTTP status of the presign."""
    headers = {"Cookie": cookie, "Content-Type": "application/json", "Accept": "application/json"}
    answer = httpx.request(
        method,
        base_url + path,
        headers=headers,
        timeout=60,
        content=PRESIGN_BODY if method == "POST" else None,
    )
    if answer.status_code != 200:
        return answer.status_code
    body = answer.json()
    stored = httpx.post(
        body["url"], data=body["fields"], files={"file": ("take.wav", b"RIFF0000WAVE", "audio/wav")}
    )
    if stored.status_code != 201:
        raise SystemExit(f"the presigned POST from {path} did not upload: {stored.status_code} {stored.text}")
    return 200


# ---------------------------------------------------------------- load


@dataclass
class Target:
    name: str
    server: Server
    method: str
    path: str
    body: str = ""
    signed_in: bool = True
    cookie: str = ""
    cookies: Path | None = None  # one cookie per line, a user each, taken in turn (bench/load.lua)
    runs: list[dict[str, float]] = field(default_factory=list)


def wrk(target: Target, seconds: int, connections: int, threads: int) -> dict[str, float]:
    env = {
        **os.environ,
        "BENCH_METHOD": target.method,
        "BENCH_BODY": target.body,
        "BENCH_COOKIE": target.cookie,
        "BENCH_COOKIES": str(target.cookies or ""),
    }
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "60s",
        "-s",
        str(LUA),
        target.server.url + target.path,
    ]
    redis = target.server.redis
    before = cpu_seconds(target.server.process.pid)  # type: ignore[union-attr]
    redis_before = redis.cpu_seconds() if redis else 0.0
    load_before = children_cpu_seconds()
    out = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CORE}),
    ).stdout
    load_cpu = children_cpu_seconds() - load_before  # wrk's own CPU: the one child waited for meanwhile
    cpu = cpu_seconds(target.server.process.pid) - before  # type: ignore[union-attr]
    redis_cpu = redis.cpu_seconds() - redis_before if redis else float("nan")
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    raw = json.loads(line[6:])
    requests = raw["requests"]
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    return {
        "rps": requests / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
        "requests": requests,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else float("nan"),
        "load_cpu_us_per_request": load_cpu / requests * 1e6 if requests else float("nan"),
        "redis_cpu_us_per_request": redis_cpu / requests * 1e6 if requests else float("nan"),
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def two_core_bound(scaled: Target, single: Target) -> float:
    """The most two workers can give over one when wrk runs on the same two cores.

    Two workers and wrk share two cores: at most 2 / (server CPU + wrk CPU per
    request) requests a second, against what one worker served in the same round.
    """
    return statistics.median(
        2e6 / (two["cpu_us_per_request"] + two["load_cpu_us_per_request"]) / one["rps"]
        for two, one in zip(scaled.runs, single.runs, strict=True)
    )


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def ratio(target: Target, base: Target) -> float:
    """Median over rounds of target req/s / base req/s in the same round.

    Each round measures every target within a minute or two, so a noisy
    neighbour that slows one round slows both sides of its ratio; a ratio of
    medians taken over different rounds would mix a quiet round with a busy one.
    """
    return statistics.median(t["rps"] / b["rps"] for t, b in zip(target.runs, base.runs, strict=True))


# ---------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def cpu_contention() -> str:
    """How much other work competed for the CPUs: PSI "some" share over the last 5 minutes, and VM steal."""
    parts = []
    with contextlib.suppress(OSError, IndexError, ValueError):
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        parts.append(
            f"runnable tasks waited for a CPU {some.split()[3].split('=')[1]} % of the last 5 min (PSI)"
        )
    with contextlib.suppress(OSError, IndexError, ValueError):
        cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        parts.append(f"VM steal {cpu[7] / sum(cpu[:8]) * 100:.1f} % since boot")
    return "; ".join(parts) or "not measurable here"


def versions() -> str:
    from importlib.metadata import version

    names = ("starlette", "uvicorn", "uvloop", "httptools", "botocore", "aioboto3", "msgspec")
    found = []
    for name in names:
        with contextlib.suppress(Exception):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def table(targets: list[Target], ceiling: Target) -> str:
    rows = [
        "| target | req/s | p50 ms | p99 ms | errors | CPU µs/req | wrk CPU µs/req | Redis CPU µs/req | × ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        if not t.runs:
            continue
        rps = median(t.runs, "rps")
        errors = int(sum(run["errors"] for run in t.runs))
        if not sum(run["requests"] for run in t.runs):
            rows.append(f"| {t.name} | 0 | no request completed | | {errors} | | | | 0.00 |")
            continue
        redis_cpu = "–" if t.server.redis is None else f"{median(t.runs, 'redis_cpu_us_per_request'):,.1f}"
        rows.append(
            f"| {t.name} | {rps:,.0f} | {median(t.runs, 'p50_ms'):.2f} | {median(t.runs, 'p99_ms'):.2f} | "
            f"{errors} | {median(t.runs, 'cpu_us_per_request'):,.0f} | {median(t.runs, 'load_cpu_us_per_request'):,.0f} | "
            f"{redis_cpu} | {ratio(t, ceiling):.2f} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def stack(env_extra: dict[str, str], s3: devstack.S3Endpoint) -> Iterator[dict[str, str]]:
    """The dev identity provider and the bucket on ``s3``; yields the service's settings for them."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the stand-ins' request logs would drown the table
    with devstack.dev_identity_provider() as issuer:
        devstack.create_bucket(s3, devstack.DEV_BUCKET, ["http://127.0.0.1"])
        env = devstack.dev_environment("http://127.0.0.1", s3, issuer)
        env.pop("SOUNDPOST_PUBLIC_URL")
        # One signed-in user makes every request here, where production spreads them over
        # many users: lift that user's budget so the limiter still runs on each request
        # (its cost is measured) without refusing any.
        env["SOUNDPOST_RATE_LIMIT"] = BENCH_RATE_LIMIT
        # Nor does that user ever upload what it signs: the pending-upload cap would refuse every presign
        # past the first fifty, so it is off (0) and, with no quota either, presign asks no ledger.
        env["SOUNDPOST_MAX_PENDING_UPLOADS"] = "0"
        yield {**env, **env_extra}


def crowd_lines(crowd: list[Target]) -> list[str]:
    """What sharing limits through Redis costs against keeping them in each process, measured in the same rounds."""
    if len(crowd) < 4:
        return []
    alone, pair, alone_redis, pair_redis = crowd
    p99 = statistics.median(
        r["p99_ms"] / p["p99_ms"] for r, p in zip(alone_redis.runs, alone.runs, strict=True)
    )
    return [
        f"- {USERS:,} users at the default limits, presign with Redis / in process, one worker: "
        f"{ratio(alone_redis, alone):.2f} (target ≥ 0.85); p99 {p99:.2f}× (target ≤ 1.5); "
        f"Redis CPU {median(alone_redis.runs, 'redis_cpu_us_per_request'):.1f} µs per request",
        f"- the same, two workers sharing Redis / two workers in process: {ratio(pair_redis, pair):.2f} "
        "(target ≥ 0.85)",
        f"- cores: servers pinned from core {SERVER_CORE} (a second worker on core {CORES[1 % len(CORES)]}), "
        f"wrk and redis-server on core {LOAD_CORE}",
    ]


def cookie_file(server: Server, secret: str, cleanup: contextlib.ExitStack) -> Path:
    """``USERS`` signed-in users of ``server``, a cookie a line (subjects named after the server: its own ledger)."""
    handle, name = tempfile.mkstemp(prefix="soundpost-bench-cookies-")
    os.close(handle)
    path = Path(name)
    cleanup.callback(path.unlink, missing_ok=True)
    tag = "".join(c for c in server.name if c.isalnum())
    path.write_text("\n".join(session_cookie(secret, f"{tag}-{n}") for n in range(USERS)) + "\n")
    return path


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("wrk is not installed; installing Debian's wrk", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 run.py bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 2 s per target, short micro"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all targets (default 3)")
    parser.add_argument(
        "--seconds", type=int, default=10, help="measured seconds per target per round (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up seconds before each measurement (default 2)"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="wrk threads (default 1: leave a core to the server)"
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the presign micro-benchmark")
    parser.add_argument("--no-naive", action="store_true", help="skip the client-per-request reference")
    parser.add_argument(
        "--no-redis", action="store_true", help="skip the targets with budgets in Redis (SOUNDPOST_REDIS_URL)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 2, 1
    ensure_wrk()

    python = sys.executable
    servers: list[Server] = []
    with stores.started("moto") as store, stack({}, store.endpoint) as env, contextlib.ExitStack() as cleanup:
        redis = None if args.no_redis else cleanup.enter_context(redis_server(cpu=LOAD_CORE))

        def server(name: str, app: str, workers: int = 1, extra: dict[str, str] | None = None) -> Server:
            extra = extra or {}
            command = (
                [python, "-m", "service", "serve"] if app == "service" else [python, "-m", "bench.serve", app]
            )
            started = Server(name, command, {**env, **extra}, workers)
            if redis is not None and "SOUNDPOST_REDIS_URL" in extra:
                started.redis = redis
            started.start()
            cleanup.callback(started.stop)
            servers.append(started)
            return started

        ceiling_server = server("ceiling", "bench.apps:ceiling")
        floor_server = server("floor", "bench.apps:floor")
        one = server("soundpost", "service")
        two = server("soundpost ×2", "service", workers=2)
        naive = None if args.no_naive else server("naive", "bench.apps:naive")
        # Many users at the default limits: every presign reserves a pending slot in the ledger, and
        # a user's budget is leased for a few of its requests only (production's shape); in process
        # and sharing Redis, each side of the ratio on as many workers.
        crowd = [server("soundpost, many users", "service", extra=DEFAULT_LIMITS)]
        crowd.append(server("soundpost ×2, many users", "service", workers=2, extra=DEFAULT_LIMITS))
        if redis is not None:
            url = DEFAULT_LIMITS | {"SOUNDPOST_REDIS_URL": redis.url}
            crowd.append(server("soundpost, many users, Redis", "service", extra=url))
            crowd.append(server("soundpost ×2, many users, Redis", "service", workers=2, extra=url))

        ceiling = Target("bare Starlette (ceiling)", ceiling_server, "GET", "/", signed_in=False)
        floor = Target(
            "bare Starlette, presign-shaped (floor)", floor_server, "POST", "/", PRESIGN_BODY, signed_in=False
        )
        presign = Target(
            "POST /api/upload/presigned-url", one, "POST", "/api/upload/presigned-url", PRESIGN_BODY
        )
        scaled = Target(
            "POST /api/upload/presigned-url, 2 workers",
            two,
            "POST",
            "/api/upload/presigned-url",
            PRESIGN_BODY,
        )
        crowd_targets = [
            Target(
                f"POST /api/upload/presigned-url, {USERS:,} users, {label}",
                s,
                "POST",
                "/api/upload/presigned-url",
                PRESIGN_BODY,
                cookies=cookie_file(s, env["SOUNDPOST_SESSION_SECRET"], cleanup),
            )
            for s, label in zip(
                crowd,
                ("in process", "2 workers in process", "Redis", "2 workers sharing Redis"),
                strict=False,
            )
        ]
        # Run order is table order. Each ratio's two sides run back to back (ceiling and presign, the
        # crowd in process and in Redis on one worker, then on two), so the machine's other load
        # changes little between them.
        first = [ceiling, presign, scaled]
        if redis is not None:
            alone, pair, alone_redis, pair_redis = crowd_targets
            first += [alone, alone_redis, pair, pair_redis]
        else:
            first += crowd_targets
        targets = [*first, floor, Target("GET /s3/params", one, "GET", PARAMS_QUERY)]
        if naive is not None:
            targets.append(
                Target(
                    "naive presign (client per request)",
                    naive,
                    "POST",
                    "/api/upload/presigned-url",
                    PRESIGN_BODY,
                )
            )

        cookies = {s.name: sign_in(s.url) for s in (one, two, *([naive] if naive else []))}
        notes = []
        for t in list(targets):
            if not t.signed_in:
                continue
            t.cookie = (
                cookies[t.server.name] if t.cookies is None else t.cookies.read_text().split("\n", 1)[0]
            )
            status = check_upload(t.server.url, t.cookie, t.path, t.method)
            if status == 404 and t.path.startswith("/s3/params"):
                notes.append("GET /s3/params: the app answers 404 (route not merged yet); target skipped.")
                targets.remove(t)
            elif status != 200:
                raise SystemExit(f"{t.name}: signed-in request answered {status}")
        for note in notes:
            print(note, flush=True)

        for round_number in range(1, args.rounds + 1):
            for t in targets:
                if args.warmup:
                    wrk(t, args.warmup, args.connections, args.threads)
                run = wrk(t, args.seconds, args.connections, args.threads)
                t.runs.append(run)
                print(
                    f"round {round_number}/{args.rounds}  {t.name:45} {run['rps']:9,.0f} req/s  "
                    f"p99 {run['p99_ms']:8.2f} ms  errors {int(run['errors'])}",
                    flush=True,
                )

        rss = {s.name: [round(rss_mb(pid), 1) for pid in s.worker_pids()] for s in servers}

    report = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"{versions()}.",
        f"CPU contention during the run: {cpu_contention()}.",
        (
            f"wrk -t{args.threads} -c{args.connections}: {args.rounds} rounds × {args.seconds} s per target "
            f"after {args.warmup} s of warm-up; medians over the rounds; ratios are medians of each round's "
            "ratio; errors summed."
        ),
        "",
        table(targets, ceiling),
        "",
        (
            f"- presign endpoint / ceiling: {ratio(presign, ceiling):.2f} (target ≥ 0.40); "
            f"p99 {median(presign.runs, 'p99_ms'):.2f} ms (target ≤ 15)"
        ),
        (
            f"- the same request and answer shape in bare Starlette (floor) / ceiling: "
            f"{ratio(floor, ceiling):.2f}; presign / floor: {ratio(presign, floor):.2f} "
            "(what Soundpost's own code leaves)"
        ),
        (
            f"- 2 workers / 1 worker: {ratio(scaled, presign):.2f} (target ≥ 1.8); with wrk on the same two cores "
            f"they can give at most {two_core_bound(scaled, presign):.2f} (2 cores / server and wrk CPU per request)"
        ),
        *crowd_lines(crowd_targets),
        "- resident memory per worker after the run (MB): "
        + "; ".join(f"{name} {', '.join(map(str, sizes))}" for name, sizes in rss.items())
        + " (target ≤ 100)",
        *[f"- {note}" for note in notes],
        *[
            f"- WARNING: {t.name} had {int(sum(r['errors'] for r in t.runs))} errors (non-2xx answers or "
            "socket errors): its figures do not measure successful requests"
            for t in targets
            if any(r["errors"] for r in t.runs)
        ],
    ]
    if not args.no_micro:
        report += ["", micro.report(quick=args.quick)]
    text = "\n".join(report)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.md").write_text(text + "\n")
    (RESULTS / f"{stamp}.json").write_text(
        json.dumps({t.name: t.runs for t in targets} | {"rss_mb": rss, "machine": machine()}, indent=2)
    )
    print(f"\nwritten to {RESULTS / stamp}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
