"""Serve a benchmark comparison app exactly as ``soundpost serve`` serves Soundpost.

python -m bench.serve bench.apps:ceiling --port 8001 --log-level warning
"""

from __future__ import annotations

import argparse

import uvicorn

from service.serving.options import add_serve_options, uvicorn_options


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("app", help="module:factory")
    add_serve_options(parser)
    args = parser.parse_args()
    uvicorn.run(args.app, factory=True, **uvicorn_options(args, root_path=""))


if __name__ == "__main__":
    main()
