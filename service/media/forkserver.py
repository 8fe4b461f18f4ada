"""``python -m service.media.forkserver``: FFmpeg loaded once, a forked child per job.

Starting an interpreter and loading FFmpeg costs about 200 ms of CPU, more than
decoding a minute of audio (measured, bench/README.md), so the web process keeps
one of these running and sends it jobs. Each job still runs in a process of its
own, forked from this one, under its own CPU and memory limits: a crash or a
kill costs that job only. One JSON line each way on stdin and stdout:

- in: ``{"id": n, "job": Job}``
- out: ``{"id": n, "pid": p}`` once the child runs (the parent kills it by pid on timeout),
  then ``{"id": n, "status": s, "answer": "..."}`` when it ended (``s`` negative: the signal).

Single-threaded (a selector over stdin and one pipe per child), so forking is safe.
"""

from __future__ import annotations

import os
import selectors
import sys
import traceback

import msgspec

from service.core.media_job import Job
from service.media import decode, mixdown, source, waveform  # noqa: F401 (loaded here once, shared by every child)
from service.media.worker import limit, run


class Request(msgspec.Struct):
    id: int
    job: Job


class Started(msgspec.Struct):
    id: int
    pid: int


class Ended(msgspec.Struct):
    id: int
    status: int
    answer: str


_request = msgspec.json.Decoder(Request)
_encode = msgspec.json.Encoder().encode


def _say(message: object) -> None:
    os.write(1, _encode(message) + b"\n")


def _child(request: Request, pipe: int) -> None:
    """In the forked child: limits first, then the job; never returns."""
    status = 70  # EX_SOFTWARE: a bug, not the file's fault
    try:
        os.close(0)
        limit(request.job.cpu_seconds, request.job.memory_bytes)
        status, answer = run(request.job)
        os.write(pipe, answer)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def serve() -> None:
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    running: dict[int, tuple[int, int, list[bytes]]] = {}  # pipe -> (id, pid, answer so far)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd == 0:
                data = os.read(0, 65536)
                if not data:  # the web process is gone: nothing more will come
                    return
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    request = _request.decode(line)
                    reader, writer = os.pipe()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        os.close(reader)
                        _child(request, writer)
                    os.close(writer)
                    running[reader] = (request.id, pid, [])
                    selector.register(reader, selectors.EVENT_READ)
                    _say(Started(request.id, pid))
                continue
            job_id, pid, chunks = running[key.fd]
            chunk = os.read(key.fd, 65536)
            if chunk:
                chunks.append(chunk)
                continue
            selector.unregister(key.fd)
            os.close(key.fd)
            del running[key.fd]
            _, status = os.waitpid(pid, 0)
            _say(Ended(job_id, os.waitstatus_to_exitcode(status), b"".join(chunks).decode()))


if __name__ == "__main__":
    serve()
