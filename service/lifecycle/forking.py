"""The replica's connection to its fork server (``python -m service.media.forkserver``): jobs out, results back.

One fork server per web process, started on first use and again if it died; a
thread reads its answers and hands each to the event loop that asked. The fork
server exits when this process's end of its stdin closes, so it never outlives
the replica.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import msgspec

from service.core.media_job import Job

logger = logging.getLogger("soundpost.decoding")

COMMAND = (sys.executable, "-m", "service.media.forkserver")


class ForkServerGone(Exception):
    """The fork server ended (killed, crashed) before the job's answer came."""


class _Message(msgspec.Struct):
    id: int
    pid: int | None = None
    status: int | None = None
    answer: str = ""


_decode_message = msgspec.json.Decoder(_Message).decode
_encode = msgspec.json.Encoder().encode


@dataclass
class _Waiting:
    started: Future[int] = field(default_factory=Future)
    ended: Future[tuple[int, str]] = field(default_factory=Future)


class ForkServer:
    """A running fork server and the jobs waiting on it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our module)
            COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self.waiting: dict[int, _Waiting] = {}
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="soundpost-forkserver", daemon=True)
        self.reader.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = _decode_message(line)
            with self.lock:
                waiting = self.waiting.get(message.id)
            if waiting is None:
                continue
            if message.pid is not None:
                waiting.started.set_result(message.pid)
            elif message.status is not None:
                waiting.ended.set_result((message.status, message.answer))
        self.process.wait()
        with self.lock:
            orphans, self.waiting = list(self.waiting.values()), {}
        for waiting in orphans:
            for future in (waiting.started, waiting.ended):
                if not future.done():
                    future.set_exception(ForkServerGone(f"status {self.process.returncode}"))

    def submit(self, job_id: int, job: Job) -> _Waiting:
        waiting = _Waiting()
        with self.lock:
            self.waiting[job_id] = waiting
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(_encode({"id": job_id, "job": job}) + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            with self.lock:
                self.waiting.pop(job_id, None)
            raise ForkServerGone("its stdin is closed") from None
        return waiting

    def done(self, job_id: int) -> None:
        with self.lock:
            self.waiting.pop(job_id, None)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


_server: ForkServer | None = None
_server_lock = threading.Lock()
_ids = itertools.count(1)


def _running() -> ForkServer:
    global _server
    with _server_lock:
        if _server is None or not _server.alive:
            if _server is not None:
                logger.error(
                    "the decoding fork server ended (status %s); starting another", _server.process.returncode
                )
                _server.close()
            _server = ForkServer()
        return _server


def shut_down() -> None:
    """End the fork server (at process exit, or when a test wants a fresh one)."""
    global _server
    with _server_lock:
        if _server is not None:
            _server.close()
            _server = None


atexit.register(shut_down)


async def run_job(job: Job) -> tuple[int, bytes]:
    """(exit status of the job's process, its answer line); cancelling (a timeout) kills that process."""
    server = _running()
    job_id = next(_ids)
    waiting = server.submit(job_id, job)
    pid: int | None = None
    try:
        pid = await asyncio.wrap_future(waiting.started)
        status, answer = await asyncio.wrap_future(waiting.ended)
    except BaseException:
        if pid is None and waiting.started.done() and not waiting.started.exception():
            pid = waiting.started.result()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        server.done(job_id)
    return status, answer.encode()
