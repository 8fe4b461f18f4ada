"""Ceph radosgw for the test session: a real S3 that enforces POST policies, the way AWS does.

moto accepts any browser POST without checking its policy, signature or expiry, so the
tests that prove the policy is enforced run against radosgw, started once per session
by ``tests/infra/rgw/start`` in a pytest tmp dir and stopped (data removed) at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.devstack import S3Endpoint
from tests.support.tools import require_tool

SCRIPTS = Path(__file__).resolve().parents[1] / "infra" / "rgw"
BINARIES = ("radosgw", "radosgw-admin", "ceph-mon", "ceph-osd", "ceph", "monmaptool")
INSTALL_HINT = "sudo apt-get install radosgw ceph-mon ceph-osd ceph-common"
REGION = "us-east-1"  # radosgw accepts any SigV4 region for its default zonegroup
MISSING_BINARIES = 3  # exit status of the start script when Ceph is not installed
START_TIMEOUT = 120


def not_installed(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where a skip would hide an untested policy."""
    require_tool(False, f"Ceph radosgw ({reason})", INSTALL_HINT)


def parse_start_output(stdout: str) -> S3Endpoint:
    """The endpoint from the start script's ``NAME=value`` lines."""
    values = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return S3Endpoint(values["S3_ENDPOINT"], values["S3_ACCESS_KEY"], values["S3_SECRET_KEY"], REGION)


@pytest.fixture(scope="session")
def rgw_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A fresh radosgw on 127.0.0.1 for the whole session, purged afterwards."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        not_installed(f"missing {', '.join(missing)}")
    env = {**os.environ, "RGW_DIR": str(tmp_path_factory.mktemp("rgw"))}
    try:
        started = subprocess.run(
            [SCRIPTS / "start"], env=env, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
        )
        if started.returncode == MISSING_BINARIES:
            not_installed(started.stderr.strip())
        if started.returncode != 0:
            pytest.fail(f"tests/infra/rgw/start failed:\n{started.stderr}", pytrace=False)
        yield parse_start_output(started.stdout)
    finally:
        # also after a failed or timed-out start: its half-up daemons are stopped by pid file
        subprocess.run([SCRIPTS / "stop", "--purge"], env=env, capture_output=True, timeout=60, check=False)
