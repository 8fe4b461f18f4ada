"""A throwaway redis-server for the benchmark: loopback only, persisting nothing, its CPU readable."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User plus system CPU time redis-server has used, from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


@contextlib.contextmanager
def redis_server(cpu: int | None = None) -> Iterator[RedisServer]:
    """Debian's redis-server on a free port, pinned to ``cpu`` if given; stopped on exit."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        command += ["--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if cpu is not None:
                os.sched_setaffinity(process.pid, {cpu})
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
                time.sleep(0.05)
            else:
                raise SystemExit(f"redis-server did not answer on port {port}")
            yield RedisServer(f"redis://127.0.0.1:{port}/0", process)
        finally:
            process.terminate()
            process.wait(timeout=10)
