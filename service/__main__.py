"""Command line: ``soundpost dev`` (everything embedded) and ``soundpost serve`` (production)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from types import FrameType

import uvicorn

from service.observability import configure_logging
from service.settings import SettingsError, load_settings


def dev(args: argparse.Namespace) -> int:
    from service import devstack
    from service.app import create_app

    public_url = f"http://127.0.0.1:{args.port}"
    with devstack.moto_s3() as s3, devstack.dev_identity_provider() as issuer:
        devstack.create_bucket(s3, devstack.DEV_BUCKET, [public_url])
        env = devstack.dev_environment(public_url, s3, issuer)
        app = create_app(load_settings(env))
        print(f"\n  Soundpost (development) is running at {public_url}\n"
              f"  S3 stand-in (moto): {s3.url}   bucket: {devstack.DEV_BUCKET}\n"
              f"  Identity provider:  {issuer}   demo users: alice, bob\n"
              "  Press Ctrl+C to stop.\n", flush=True)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(args: argparse.Namespace) -> int:
    # Uvicorn drains in-flight requests on SIGTERM, then raises the signal again with the handler it found.
    # With the default handler that kills the process (status -15), so a clean, asked-for stop would look
    # like a crash to supervisors; this handler makes it exit 0. Before uvicorn runs it simply exits too.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its metrics here and /metrics sums them (prometheus-client multiprocess mode).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="soundpost-metrics-")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        root_path=settings.root_path,
        log_level=args.log_level,
        log_config=None,  # keep the JSON logging configured in main()
        access_log=False,  # uvicorn's access log prints query strings (OAuth codes); ours does not
        timeout_graceful_shutdown=30,  # on SIGTERM, in-flight requests get this long to finish
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soundpost", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser("dev", help="run the app with an embedded S3 stand-in and identity provider")
    dev_cmd.add_argument("--port", type=int, default=8000)
    dev_cmd.set_defaults(run=dev)
    serve_cmd = commands.add_parser("serve", help="run the app with settings from SOUNDPOST_* variables")
    serve_cmd.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve_cmd.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    serve_cmd.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                           help="proxies whose X-Forwarded-* headers are trusted")
    serve_cmd.add_argument("--log-level", default="info")
    serve_cmd.set_defaults(run=serve)
    args = parser.parse_args(argv)
    if args.command == "serve":
        configure_logging(args.log_level)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
