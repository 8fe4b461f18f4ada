"""The S3 store a benchmark runs against: moto in the benchmark's process, or Ceph radosgw in its own.

moto's server (werkzeug's) answers from the benchmark's process under its one GIL and
closes every connection after each answer, so the service's CPU per S3 request includes
a TCP connect and the harness competes with the service for the cores. radosgw keeps
connections open and runs in its own processes, like the store the issue's baseline was
measured on; ``--store`` chooses, and radosgw is the default wherever it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moto.moto_server.werkzeug_app import MotoRequestHandler

from service import devstack
from tests.support.rgw import (
    BINARIES,
    INSTALL_HINT,
    MISSING_BINARIES,
    SCRIPTS,
    START_TIMEOUT,
    parse_start_output,
)

# The OSD holds every object in memory: a promotion run keeps each row's library copies, renditions and
# staging objects (about 1.5 GiB in all), and an OSD past its 1 GiB default stalls writes until timeouts.
MEMSTORE_BYTES = 6 << 30
RGW_DAEMONS = ("mon.a", "osd.0", "client.rgw.a")  # the start script's pid files, under RGW_DIR/run


@dataclass
class Tally:
    """How many requests the store answered within a counting window."""

    count: int = 0


@dataclass(frozen=True)
class Store:
    """A running store: where it listens, its own processes (none for moto), how its requests are counted."""

    name: str
    endpoint: devstack.S3Endpoint
    pids: tuple[int, ...]
    counting: Callable[[], contextlib.AbstractContextManager[Tally]]
    counted_by: str


def rgw_installed() -> bool:
    """Whether the binaries tests/infra/rgw/start needs are on PATH."""
    return all(shutil.which(name) for name in BINARIES)


def add_option(parser: argparse.ArgumentParser) -> None:
    """``--store``, radosgw by default where it is installed, as the issue's baseline was measured on it."""
    default = "rgw" if rgw_installed() else "moto"
    parser.add_argument(
        "--store",
        choices=("moto", "rgw"),
        default=default,
        help=f"the S3 store: moto in this process or Ceph radosgw in its own (default here: {default})",
    )


def started(name: str) -> contextlib.AbstractContextManager[Store]:
    """The named store, running until the context ends."""
    return radosgw() if name == "rgw" else moto()


@contextlib.contextmanager
def moto() -> Iterator[Store]:
    """moto's S3 server on threads of this process."""
    # moto's server speaks HTTP/1.0 and closes every connection, which a store does not. HTTP/1.1 would keep
    # them open where the answer allows; moto's answers still say "Connection: close" (it drains the socket).
    MotoRequestHandler.protocol_version = "HTTP/1.1"
    with devstack.moto_s3() as endpoint:
        yield Store("moto", endpoint, (), access_log_count, "moto's access log")


class _Counter(logging.Handler):
    """Counts log records into a tally instead of printing them."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.INFO)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        self.tally.count += 1


@contextlib.contextmanager
def access_log_count() -> Iterator[Tally]:
    """Counts the requests moto's in-process server logs (werkzeug's access log) in the window, silently."""
    tally = Tally()
    log = logging.getLogger("werkzeug")
    level, propagate, handlers = log.level, log.propagate, log.handlers
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers = [_Counter(tally)]
    try:
        yield tally
    finally:
        log.handlers = handlers
        log.setLevel(level)
        log.propagate = propagate


@contextlib.contextmanager
def radosgw() -> Iterator[Store]:
    """A fresh single-node radosgw from tests/infra/rgw/start, stopped and its data purged afterwards."""
    if not rgw_installed():
        raise SystemExit(f"Ceph radosgw is not installed ({INSTALL_HINT}); or run with --store moto")
    folder = Path(tempfile.mkdtemp(prefix="soundpost-bench-rgw-"))
    env = {**os.environ, "RGW_DIR": str(folder), "RGW_MEMSTORE_BYTES": str(MEMSTORE_BYTES)}
    try:
        yield launched(env, folder / "run")
    finally:
        # also after a failed start: half-up daemons are stopped by pid file; --purge removes the folder
        subprocess.run([SCRIPTS / "stop", "--purge"], env=env, capture_output=True, timeout=60, check=False)


def launched(env: dict[str, str], run: Path) -> Store:
    """Runs the start script with ``env``: the store it started, or the benchmark stopped saying why not."""
    start = subprocess.run(
        [SCRIPTS / "start"], env=env, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )
    if start.returncode == MISSING_BINARIES:
        raise SystemExit(f"Ceph radosgw is not installed: {start.stderr.strip()}")
    if start.returncode != 0:
        raise SystemExit(f"tests/infra/rgw/start failed:\n{start.stderr}")
    pids = tuple(int((run / f"{daemon}.pid").read_text()) for daemon in RGW_DAEMONS)
    counting = functools.partial(request_counter_count, run / "client.rgw.a.asok")
    endpoint = parse_start_output(start.stdout)
    return Store("rgw", endpoint, pids, counting, "radosgw's own request counter (perf dump: rgw.req)")


@contextlib.contextmanager
def request_counter_count(admin_socket: Path) -> Iterator[Tally]:
    """Counts the requests radosgw took in the window, from its own counter read at both ends."""
    tally = Tally()
    before = requests_answered(admin_socket)
    yield tally
    tally.count = requests_answered(admin_socket) - before


def requests_answered(admin_socket: Path) -> int:
    """radosgw's count of the requests it has taken since it started, through its admin socket."""
    dump = subprocess.run(
        ["ceph", "--admin-daemon", str(admin_socket), "perf", "dump", "rgw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(dump)["rgw"]["req"])
