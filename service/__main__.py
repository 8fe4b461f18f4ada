"""Command line: ``soundpost dev`` (everything embedded), ``soundpost serve`` (production), ``soundpost bucket setup | check``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from types import FrameType

import uvicorn

from service.observability import configure_logging
from service.serving.options import add_serve_options, protocol_options, uvicorn_options
from service.settings import Settings, SettingsError, load_settings


def dev(args: argparse.Namespace) -> int:
    from service import devstack
    from service.app import create_app

    public_url = f"http://127.0.0.1:{args.port}"
    # The stand-ins run on werkzeug, which logs every request they serve: noise next to the app's own log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with devstack.moto_s3() as s3, devstack.dev_identity_provider() as issuer:
        # SOUNDPOST_* variables of this process win over the stand-ins' values.
        env = devstack.dev_environment(public_url, s3, issuer)
        try:
            settings = load_settings(env)
        except SettingsError as exc:
            print(exc, file=sys.stderr)
            return 2
        if settings.s3_endpoint == s3.url:  # the bucket lives on the stand-in: make it there
            devstack.create_bucket(s3, settings.s3_bucket, [settings.public_origin])
        app = create_app(settings)
        taken = ", ".join(sorted(devstack.overrides(os.environ))) or "none"
        print(
            f"\n  Soundpost (development) is running at {public_url}\n"
            f"  S3 stand-in (moto): {s3.url}   bucket: {settings.s3_bucket}\n"
            f"  Identity provider:  {issuer}   demo users: alice, bob\n"
            f"  From the environment: {taken}\n"
            "  Press Ctrl+C to stop.\n",
            flush=True,
        )
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            server_header=False,
            **protocol_options(),
        )
    return 0


def environment_settings() -> Settings | None:
    """The SOUNDPOST_* settings of this process, or None once every problem is printed (the command exits 2)."""
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    # Uvicorn drains in-flight requests on SIGTERM, then raises the signal again with the handler it found.
    # With the default handler that kills the process (status -15), so a clean, asked-for stop would look
    # like a crash to supervisors; this handler makes it exit 0. Before uvicorn runs it simply exits too.
    signal.signal(signal.SIGTERM, _stopped)
    settings = environment_settings()
    if settings is None:
        return 2
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here and /metrics sums them (prometheus-client multiprocess mode).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="soundpost-metrics-")
    # The root path comes from SOUNDPOST_PUBLIC_URL's path: the app can be hosted under a prefix.
    uvicorn.run("service.app:create_app", factory=True, **uvicorn_options(args, settings.root_path))
    return 0


def bucket_setup(args: argparse.Namespace) -> int:
    from service.storage.bucket import SetupError, setup

    settings = environment_settings()
    if settings is None:
        return 2
    try:
        asyncio.run(setup(settings, lambda line: print(line, flush=True), events=args.events))
    except SetupError as exc:
        print(f"bucket setup failed: {exc}", file=sys.stderr)
        return 1
    return 0


def bucket_check(args: argparse.Namespace) -> int:
    """Probe what the store does; 1 when something Soundpost needs is missing."""
    from service.storage.capabilities import bucket_check as check

    settings = environment_settings()
    if settings is None:
        return 2
    return 0 if asyncio.run(check(settings, lambda line: print(line, flush=True))) else 1


def sweep(args: argparse.Namespace) -> int:
    """One sweeper pass, for cron or a Kubernetes CronJob; 0 when the pass completed."""
    from service.lifecycle.sweeper import sweep_once
    from service.storage.errors import StorageUnavailable

    settings = environment_settings()
    if settings is None:
        return 2
    try:
        report = asyncio.run(sweep_once(settings))
    except StorageUnavailable as exc:
        print(
            f"sweep failed: S3 unreachable ({exc.advice}); check SOUNDPOST_S3_ENDPOINT",
            file=sys.stderr,
        )
        return 1
    print(
        f"promoted {report.promoted}, rejected {report.rejected}, replaced {report.replaced}, "
        f"expired {report.expired}, aborted {report.aborted}, redelivered {report.redelivered}, "
        f"forgotten {report.forgotten}, backfilled {report.backfilled}, undecodable {report.undecodable}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soundpost", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser(
        "dev", help="run the app with an embedded S3 stand-in and identity provider"
    )
    dev_cmd.add_argument("--port", type=int, default=8000)
    dev_cmd.set_defaults(run=dev)
    serve_cmd = commands.add_parser("serve", help="run the app with settings from SOUNDPOST_* variables")
    add_serve_options(serve_cmd)
    serve_cmd.set_defaults(run=serve)
    sweep_cmd = commands.add_parser(
        "sweep", help="one sweeper pass: promote, expire, abort, redeliver, recount; then exit"
    )
    sweep_cmd.add_argument("--log-level", default="info")
    sweep_cmd.set_defaults(run=sweep)
    bucket_cmd = commands.add_parser("bucket", help="manage the bucket the settings name")
    bucket_steps = bucket_cmd.add_subparsers(dest="step", required=True)
    setup_cmd = bucket_steps.add_parser(
        "setup",
        help="apply CORS, the staging lifecycle rule and (with an events token) S3 event notifications",
    )
    setup_cmd.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="leave notifications alone (MinIO: its webhook target is configured on the server instead)",
    )
    setup_cmd.set_defaults(run=bucket_setup)
    check_cmd = bucket_steps.add_parser(
        "check", help="probe what the store does (POST uploads, conditional writes, checksums, ...)"
    )
    check_cmd.set_defaults(run=bucket_check)
    args = parser.parse_args(argv)
    if args.command in ("serve", "sweep"):
        configure_logging(args.log_level)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
