"""The promotion benchmark: decoding CPU per audio-minute against FFmpeg's null decode, and promotions/s.

    .venv/bin/python -m bench.promotion            # 20 promotions per file and concurrency, 5 decode repeats
    .venv/bin/python -m bench.promotion --quick    # smoke run: 4 promotions, 2 repeats

Everything runs on 127.0.0.1 against one S3 store (``--store``: radosgw where it is
installed, else moto's server in this process; bench/stores.py), in one run, so the
ratios compare like with like; bench/README.md describes the method.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import stores
from bench.run import TICKS, Server, process_tree, sign_in, stack
from service import devstack
from service.core.media_job import Job, job_encoder
from service.lifecycle import forking

# name -> (declared type, ffmpeg's output options)
FILES = {
    "webm": ("audio/webm", ["-c:a", "libopus", "-b:a", "48k"]),
    "wav": ("audio/wav", ["-c:a", "pcm_s16le"]),
}
SECONDS = 60


def make_file(directory: Path, name: str, seconds: int = SECONDS) -> Path:
    """A 440 Hz tone at 48 kHz mono (one minute unless told), as FFmpeg's encoders write it."""
    target = directory / f"tone-{seconds}s.{name}"
    source = f"sine=frequency=440:duration={seconds}:sample_rate=48000"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *FILES[name][1], str(target)], check=True
    )
    return target


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def null_decode_cpu(path: Path, repeats: int) -> float:
    """CPU seconds of ``ffmpeg -i FILE -f null -`` (the same decoders doing nothing else), median."""
    runs = []
    for _ in range(repeats):
        before = children_cpu()
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)
        runs.append(children_cpu() - before)
    return statistics.median(runs)


def worker_cpu(url: str, size: int, etag: str, declared: str, rendition: str | None, repeats: int) -> float:
    """CPU seconds of one decoding worker process (interpreter start included), median."""
    job = job_encoder.encode(Job(url, size, etag, declared, 7200.0, rendition_url=rendition))
    runs = []
    for _ in range(repeats):
        before = children_cpu()
        done = subprocess.run(
            [sys.executable, "-m", "service.media.worker"], input=job, capture_output=True, check=True
        )
        assert done.stdout.startswith(b'{"type":"decoded"'), done.stdout[:200]
        runs.append(children_cpu() - before)
    return statistics.median(runs)


# Runs the real worker in a process that then reports its own peak resident memory: VmHWM, the
# high-water mark of its address space. (ru_maxrss would also count this benchmark's memory, copied
# into the child by fork before exec: with moto's objects in it, that grew with the file's length.)
PEAK_PROBE = (
    "import runpy, sys\n"
    "try:\n    runpy.run_module('service.media.worker', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
)


def worker_peak_mib(url: str, size: int, etag: str, declared: str, rendition: str | None) -> float:
    """The decoding worker's peak resident memory in MiB for one job."""
    job = job_encoder.encode(Job(url, size, etag, declared, 7200.0, rendition_url=rendition))
    done = subprocess.run([sys.executable, "-c", PEAK_PROBE], input=job, capture_output=True, check=True)
    return int(done.stderr.split()[-1]) / 1024


def startup_cpu(repeats: int) -> float:
    """CPU seconds of a worker that only starts and imports its libraries: what a pool would save."""
    runs = []
    for _ in range(repeats):
        before = children_cpu()
        subprocess.run([sys.executable, "-c", "import av, service.media.decode"], check=True)
        runs.append(children_cpu() - before)
    return statistics.median(runs)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> tuple[float, float]:
    """(the server's own CPU seconds, the decoding's: its fork server and the jobs it forked) from /proc."""
    own, decoding = 0, 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = _stat(member)
            if member == pid:
                own += int(fields[11]) + int(fields[12])
            else:
                decoding += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return own / TICKS, decoding / TICKS


def forked_cpu(url: str, size: int, etag: str, declared: str, rendition: str | None, repeats: int) -> float:
    """CPU seconds of one job forked by the fork server, as promotion runs it (no interpreter start), median."""
    job = Job(url, size, etag, declared, 7200.0, rendition_url=rendition)
    server = forking._running()
    runs = []
    for _ in range(repeats):
        before = _stat(server.process.pid)
        status, _ = asyncio.run(forking.run_job(job))
        after = _stat(server.process.pid)
        assert status == 0
        runs.append(sum(int(after[i]) - int(before[i]) for i in (13, 14)) / TICKS)
    return statistics.median(runs)


def upload(client: httpx.Client, path: Path, declared: str) -> str:
    signed = client.post(
        "/api/upload/presigned-url",
        json={"filename": path.name, "contentType": declared, "size": path.stat().st_size},
        headers={"Origin": str(client.base_url)},
    )
    assert signed.status_code == 200, signed.text
    answer = signed.json()
    posted = httpx.post(
        answer["url"],
        data=answer["fields"],
        files={"file": (path.name, path.read_bytes(), declared)},
        timeout=60,
    )
    assert posted.status_code in (201, 204), posted.text
    return str(answer["key"].split("/")[-2])


def promotions(
    server: Server, store: stores.Store, cookie: str, path: Path, declared: str, count: int, at_once: int
) -> dict[str, float]:
    """Upload ``count`` copies, then confirm them ``at_once`` at a time; wall time and CPU per promotion."""
    headers = {"Cookie": cookie}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        warm_up = upload(client, path, declared)  # starts the fork server outside the measured window
        assert (
            client.post(f"/api/uploads/{warm_up}/confirm", headers={"Origin": server.url}).status_code == 200
        )
        ids = [upload(client, path, declared) for _ in range(count)]
        assert server.process is not None

        def confirm(upload_id: str) -> int:
            return client.post(
                f"/api/uploads/{upload_id}/confirm", headers={"Origin": server.url}
            ).status_code

        # The count's window holds the measured one: reading radosgw's counter runs `ceph`, outside the time.
        with store.counting() as requests:
            own_before, workers_before = process_cpu(server.process.pid)
            started = time.perf_counter()
            machine_before = machine_times()
            with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
                statuses = list(pool.map(confirm, ids))
            wall = time.perf_counter() - started
            own_after, workers_after = process_cpu(server.process.pid)
            machine_after = machine_times()
        busy, total = (after - before for after, before in zip(machine_after, machine_before, strict=True))
    assert statuses == [200] * count, statuses
    return {
        "per_second": count / wall,
        "wall_ms": 1000 * wall / count * at_once,
        "service_ms": 1000 * (own_after - own_before) / count,
        "worker_ms": 1000 * (workers_after - workers_before) / count,
        "s3_requests": requests.count / count,
        "busy_percent": 100 * busy / total if total else 0.0,
    }


def machine_times() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat (busy: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


@contextlib.contextmanager
def service(env: dict[str, str], renditions: str) -> Iterator[tuple[Server, str]]:
    # Not pinned to a core: the decoding fork server and its jobs inherit the web process's CPU
    # affinity, so a pinned server would run every decode on its one core (the machine at most
    # about 60 % busy however many promotions run at once).
    server = Server(
        f"soundpost ({renditions})",
        [sys.executable, "-m", "service", "serve"],
        {**env, "SOUNDPOST_RENDITIONS": renditions, "SOUNDPOST_CONFIRM_RATE_LIMIT": "1000000/second"},
        pinned=False,
    )
    server.start()
    try:
        yield server, sign_in(server.url)
    finally:
        server.stop()


def in_bucket(s3: Any, bucket: str, path: Path) -> tuple[str, str, str]:
    """Put ``path`` in the bucket as a job's source: its ETag, a presigned GET of it, a presigned PUT beside it."""
    key = f"bench/{path.name}"
    s3.upload_file(str(path), bucket, key)
    etag = str(s3.head_object(Bucket=bucket, Key=key)["ETag"])
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    put = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key + ".flac", "ContentType": "audio/flac"}
    )
    return etag, str(url), str(put)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.promotion", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 promotions, 2 repeats")
    parser.add_argument("--count", type=int, default=20, help="promotions per file and concurrency")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each decode measurement")
    stores.add_option(parser)
    args = parser.parse_args(argv)
    count, repeats = (4, 2) if args.quick else (args.count, args.repeats)
    long_seconds = 600 if args.quick else 3600
    with (
        tempfile.TemporaryDirectory() as scratch,
        stores.started(args.store) as store,
        stack({}, store.endpoint) as env,
    ):
        print(f"store: {store.name}; S3 requests counted by {store.counted_by}\n")
        files = {name: make_file(Path(scratch), name) for name in FILES}
        s3 = devstack.s3_admin(store.endpoint)
        bucket = env["SOUNDPOST_S3_BUCKET"]
        start = startup_cpu(repeats)
        print(f"worker start-up (interpreter + PyAV import): {1000 * start:.0f} ms CPU\n")
        print(
            "| file | ffmpeg null decode ms CPU/min | fresh worker ms CPU/min | minus its start-up "
            "| forked job ms CPU/min | forked / null |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, path in files.items():
            declared = FILES[name][0]
            etag, url, put = in_bucket(s3, bucket, path)
            null = null_decode_cpu(path, repeats)
            for label, rendition in (("", None), (" + rendition", put)):
                whole = worker_cpu(url, path.stat().st_size, etag, declared, rendition, repeats)
                forked = forked_cpu(url, path.stat().st_size, etag, declared, rendition, repeats)
                print(
                    f"| {name}{label} | {1000 * null:.0f} | {1000 * whole:.0f} | {1000 * (whole - start):.0f} "
                    f"| {1000 * forked:.0f} | {forked / null:.2f} |"
                )
        print("\n| Opus WebM | worker peak memory MiB | with the rendition |\n| --- | ---: | ---: |")
        for seconds in (SECONDS, long_seconds):
            path = make_file(Path(scratch), "webm", seconds)
            etag, url, put = in_bucket(s3, bucket, path)
            peaks = [worker_peak_mib(url, path.stat().st_size, etag, "audio/webm", r) for r in (None, put)]
            print(f"| {seconds // 60} min | {peaks[0]:.0f} | {peaks[1]:.0f} |")
        print(
            "\n| renditions | file | at once | promotions/s | wall ms each | service ms CPU each "
            "| decoding ms CPU each | S3 requests each | machine busy % |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for renditions in ("off", "speech"):
            with service(env, renditions) as (server, cookie):
                for name, path in files.items():
                    for at_once in (1, 8, 32):
                        many = max(count, at_once)  # at least one promotion per client at once
                        got = promotions(server, store, cookie, path, FILES[name][0], many, at_once)
                        print(
                            f"| {renditions} | {name} | {at_once} | {got['per_second']:.1f} | {got['wall_ms']:.0f} "
                            f"| {got['service_ms']:.1f} | {got['worker_ms']:.0f} | {got['s3_requests']:.1f} "
                            f"| {got['busy_percent']:.0f} |",
                            flush=True,
                        )
    print(
        f"\nmachine: {os.cpu_count()} cores; store: {args.store}; {count} promotions per row, "
        f"decode figures medians of {repeats}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
