"""The listing benchmark: the service's CPU for one page of 50 uploads, against a presign in the same run.

    .venv/bin/python -m bench.listing            # 50 uploads, 300 pages, 3 repeats
    .venv/bin/python -m bench.listing --quick    # smoke run

One server against the S3 store ``--store`` names (radosgw where it is installed, else
moto in this process: bench/stores.py), as bench/promotion.py. The pages are fetched one
at a time, so the server's CPU over them is the cost of a page, not of a queue. A
presign is measured alongside as the unit (the issue's goal: at most 2 ms of service
CPU per 50-item page).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import stores
from bench.promotion import process_cpu, service, upload
from bench.run import BENCH_RATE_LIMIT, stack
from tests.support import audio_samples


def per_request(
    server_pid: int, client: httpx.Client, method: str, path: str, count: int, **kwargs: object
) -> float:
    """Milliseconds of the server's own CPU per request, over ``count`` requests one after another."""
    own_before, _ = process_cpu(server_pid)
    for _ in range(count):
        answer = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == 200, answer.text
    own_after, _ = process_cpu(server_pid)
    return 1000 * (own_after - own_before) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 pages, 1 repeat")
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    stores.add_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.pages, args.repeats = 100, 1
    lifted = {"SOUNDPOST_STORAGE_RATE_LIMIT": BENCH_RATE_LIMIT}  # one user asks for every page
    with (
        stores.started(args.store) as store,
        stack(lifted, store.endpoint) as env,
        service(env, "off") as (server, cookie),
        tempfile.TemporaryDirectory() as folder,
    ):
        sample = Path(folder) / "take.wav"
        sample.write_bytes(audio_samples.wav(1.0))
        assert server.process is not None
        pid = server.process.pid
        with httpx.Client(base_url=server.url, headers={"Cookie": cookie}, timeout=60) as client:
            origin = {"Origin": server.url}
            for _ in range(args.uploads):
                upload_id = upload(client, sample, "audio/wav")
                assert client.post(f"/api/uploads/{upload_id}/confirm", headers=origin).status_code == 200
            page = client.get("/api/uploads", params={"limit": 50})
            assert len(page.json()["uploads"]) == min(50, args.uploads), page.text
            body = {"filename": "take.wav", "contentType": "audio/wav", "size": 1000}
            pages, presigns = [], []
            for _ in range(args.repeats):
                pages.append(per_request(pid, client, "GET", "/api/uploads?limit=50", args.pages))
                presigns.append(
                    per_request(
                        pid,
                        client,
                        "POST",
                        "/api/upload/presigned-url",
                        args.pages,
                        json=body,
                        headers=origin,
                    )
                )
    page_ms, presign_ms = statistics.median(pages), statistics.median(presigns)
    print(
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC against {store.name}; "
        f"medians of {args.repeats} runs."
    )
    print("| request | service ms CPU each |")
    print("| --- | ---: |")
    print(f"| GET /api/uploads, a page of 50 | {page_ms:.2f} |")
    print(f"| POST /api/upload/presigned-url | {presign_ms:.2f} |")
    print(
        f"\n- a page costs {page_ms / presign_ms:.1f} presigns (goal: at most 2 ms of service CPU per page)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
