"""The embedded development stack: S3 stand-in, identity provider and app, all on 127.0.0.1.

Nothing here is used in production. It exists so that one command on a fresh
machine shows the whole path from "not signed in" to "audio object in the bucket".
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import boto3
import werkzeug.serving
from botocore.config import Config

from service.settings import ENV_PREFIX
from service.storage.bucket import cors_rule

DEV_BUCKET = "soundpost-dev"
DEV_ACCESS_KEY = "soundpost-dev"
DEV_SECRET_KEY = "soundpost-dev-secret"  # noqa: S105 - the loopback-only dev S3 stand-in's key
DEV_REGION = "us-east-1"
DEV_USERS = (
    ("alice", {"email": "alice@example.com", "email_verified": True, "name": "Alice Example"}),
    ("bob", {"email": "bob@example.com", "email_verified": True, "name": "Bob Example"}),
)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str


@contextlib.contextmanager
def serve_wsgi(app: object, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve a WSGI app on a background thread; yields its base URL."""
    server = werkzeug.serving.make_server(host, port, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def moto_s3(port: int = 0) -> Iterator[S3Endpoint]:
    """moto's S3 in server mode: the same HTTP API a browser and aioboto3 use against real S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        host, bound = server.get_host_and_port()
        yield S3Endpoint(f"http://{host}:{bound}", DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_REGION)
    finally:
        server.stop()


@functools.cache
def s3_admin(endpoint: S3Endpoint):  # type: ignore[no-untyped-def]
    """A plain boto3 client for setting up buckets (outside the app's own clients); made once per endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        # As the app's clients: moto 5.2 answers an object assembled from SHA-256 parts with their
        # composite checksum but without AWS's "-N" suffix, which botocore then takes for the whole
        # object's and refuses to read.
        config=Config(response_checksum_validation="when_required"),
    )


def create_bucket(endpoint: S3Endpoint, bucket: str, browser_origins: list[str]) -> None:
    """Create the bucket with the CORS rule that lets the page POST and play back (the one bucket setup applies)."""
    client = s3_admin(endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [cors_rule(browser_origins)]})


@contextlib.contextmanager
def dev_identity_provider(port: int = 0) -> Iterator[str]:
    """oidc-provider-mock with demo users; yields its issuer URL (discovery is under it)."""
    with warnings.catch_warnings():
        # oidc-provider-mock still imports authlib.jose, which Authlib deprecates; not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        import oidc_provider_mock

    # The mock refuses plain http unless told this is a local test setup.
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    users = [oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in DEV_USERS]
    app = oidc_provider_mock.app(require_nonce=True, user_claims=users)
    with serve_wsgi(app, port=port) as url:
        yield url


def dev_environment(
    public_url: str, s3: S3Endpoint, issuer: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The SOUNDPOST_* settings that wire the app to the embedded stand-ins, under any set in ``environ``.

    A SOUNDPOST_* variable of the process's environment wins over the stand-ins' value, so a
    quota, a limit or another provider can be tried locally without assembling a stack by hand.
    """
    return {**dev_defaults(public_url, s3, issuer), **overrides(os.environ if environ is None else environ)}


def overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The SOUNDPOST_* variables set (non-empty) in ``environ``."""
    return {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX) and value.strip()}


def dev_defaults(public_url: str, s3: S3Endpoint, issuer: str) -> dict[str, str]:
    """What ``soundpost dev`` sets when the environment does not: the embedded stand-ins' settings."""
    return {
        "SOUNDPOST_PUBLIC_URL": public_url,
        "SOUNDPOST_SESSION_SECRET": secrets.token_urlsafe(48),
        "SOUNDPOST_PROVIDERS": "dev",
        "SOUNDPOST_PROVIDER_DEV_TITLE": "Dev identity provider",
        "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": f"{issuer}/.well-known/openid-configuration",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost-dev",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "soundpost-dev-secret",
        "SOUNDPOST_S3_ENDPOINT": s3.url,
        "SOUNDPOST_S3_REGION": s3.region,
        "SOUNDPOST_S3_BUCKET": DEV_BUCKET,
        "SOUNDPOST_S3_ACCESS_KEY_ID": s3.access_key,
        "SOUNDPOST_S3_SECRET_ACCESS_KEY": s3.secret_key,
    }


def free_port() -> int:
    """A loopback port nothing listens on right now (for a process that binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """``soundpost serve`` running in a process of its own."""

    url: str
    process: subprocess.Popen[bytes]
    log_file: str

    def log(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        with open(self.log_file, encoding="utf-8", errors="replace") as log:
            return log.read()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator stops it; returns the exit status once the process is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - an http URL we built
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def soundpost_serve(
    env: Mapping[str, str], port: int = 0, start_within: float = 60
) -> Iterator[ServeProcess]:
    """Run ``soundpost serve`` on 127.0.0.1 with these SOUNDPOST_* settings; yields once /healthz answers.

    ``SOUNDPOST_PUBLIC_URL`` defaults to where the process listens. The process
    gets SIGTERM on the way out (if it is still running).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {"SOUNDPOST_PUBLIC_URL": url, **env}
    command = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with tempfile.NamedTemporaryFile(prefix="soundpost-serve-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, env={**os.environ, **settings}, stdout=log, stderr=subprocess.STDOUT
        )
    served = ServeProcess(url, process, log.name)
    try:
        deadline = time.monotonic() + start_within
        while not _answers(f"{url}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"soundpost serve did not start:\n{served.log()}")
            time.sleep(0.1)
        yield served
    finally:
        served.terminate()
        os.unlink(log.name)
