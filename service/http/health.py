"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` does no I/O: the process answers, so it is alive. ``/readyz`` checks
what a request needs from outside: the bucket is reachable with our credentials,
each OpenID provider's discovery document loads (fetched at most every
``discovery.PROBE_WINDOW`` seconds, each fetch bounded by ``PROBE_TIMEOUT``, so
a provider that goes down shows within a few seconds), and, with Redis, that
sign-outs from other replicas are being followed.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from service.http.handlers import storage_answer
from service.identity.revocation import SharedRevocations
from service.resources import resources
from service.schemas import Health, Readiness, json_response
from service.storage.client import Storage, probe
from service.storage.errors import StorageUnavailable

logger = logging.getLogger("soundpost.health")


async def healthz(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def _bucket(storage: Storage) -> str:
    """The S3 check: "ok", "unreachable (...)", or the code of S3's refusal and what to fix."""
    fault = await probe(storage)
    if fault is None:
        return "ok"
    if isinstance(fault, StorageUnavailable) and fault.unreachable:
        return f"unreachable ({fault.advice})"
    return f"{storage_answer(fault).code} ({fault.advice})"


async def readyz(request: Request) -> Response:
    state = resources(request)
    checks = {"s3": await _bucket(state["storage"])}
    for name, provider in state["providers"].items():
        if provider.provider.kind == "oidc":
            checks[f"idp:{name}"] = await provider.probe()
    if isinstance(state["revocations"], SharedRevocations):
        checks["revocations"] = "ok" if state["revocations"].healthy else "unreachable (Redis)"
    ready = all(result == "ok" for result in checks.values())
    if not ready:
        logger.warning("not ready: %s", checks)
    return json_response(
        Readiness(status="ready" if ready else "not_ready", checks=checks), status_code=200 if ready else 503
    )
