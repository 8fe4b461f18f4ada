"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` does no I/O: the process answers, so it is alive. ``/readyz`` checks
what a request needs from outside: the bucket is reachable with our credentials,
and each OpenID provider's discovery metadata can be loaded (through the same
cache sign-in uses).
"""

from __future__ import annotations

import logging

import httpx2 as httpx
from starlette.requests import Request
from starlette.responses import Response

from service.auth import load_metadata
from service.resources import resources
from service.schemas import Health, Readiness, json_response
from service.storage import STORAGE_DOWN, Storage, probe

logger = logging.getLogger("soundpost.health")


async def healthz(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def _bucket(storage: Storage) -> str:
    """The S3 check: "ok", "unreachable (...)", or the code of S3's refusal and what to fix."""
    try:
        fault = await probe(storage)
    except STORAGE_DOWN as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok" if fault is None else f"{fault.error.code} ({fault.advice})"


async def _provider_metadata(request: Request, name: str, ttl: int) -> str:
    client = request.app.state.oauth.create_client(name)
    try:
        await load_metadata(client, ttl)
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    except ValueError as exc:  # a body that is not JSON
        return f"unusable ({type(exc).__name__})"
    return "ok"


async def readyz(request: Request) -> Response:
    state = resources(request)
    settings = state["settings"]
    checks = {"s3": await _bucket(state["storage"])}
    for provider in settings.providers:
        if provider.kind == "oidc":
            checks[f"idp:{provider.name}"] = await _provider_metadata(
                request, provider.name, settings.idp_metadata_ttl
            )
    ready = all(result == "ok" for result in checks.values())
    if not ready:
        logger.warning("not ready: %s", checks)
    return json_response(
        Readiness(status="ready" if ready else "not_ready", checks=checks), status_code=200 if ready else 503
    )
