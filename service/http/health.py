"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` does no I/O: the process answers, so it is alive. ``/readyz`` runs
every check at once under one deadline (``DEADLINE``, whatever the number of
providers): the bucket is reachable with our credentials; with Redis, a timed
PING, the revocation follower's last successful read and the budget store's
PING; each identity provider answers (discovery fetched at most every
``providers.PROBE_WINDOW`` seconds, each fetch bounded by ``PROBE_TIMEOUT``); with
S3 events on, whether the last sweep had to promote uploads no push promoted
(``service.event_pushes``).

A replica is ready while it can serve signed-in users: the bucket and Redis are
required. A provider outage only stops new sign-ins, which every replica shares,
and missed event pushes only delay promotion to the sweeper, so either keeps the
replica in the load balancer: the status is then "degraded" (200),
the check says why, and ``soundpost_readiness_check_ok`` in /metrics shows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import Response

from service.event_pushes import PUSHES
from service.http.handlers import storage_answer
from service.identity.revocation import SharedRevocations
from service.limits.shared import SharedWindows
from service.limits.windows import Limiters
from service.resources import resources
from service.schemas import Health, Readiness, json_response
from service.settings import Settings
from service.storage.client import Storage, probe
from service.storage.errors import StorageUnavailable

logger = logging.getLogger("soundpost.health")

DEADLINE = 5.0  # seconds /readyz may take, all checks together
# Checks whose failure degrades the service but leaves the replica ready: the providers, and S3 event pushes.
OPTIONAL = ("idp:", "events")

CHECK_OK = Gauge(
    "soundpost_readiness_check_ok",
    "1 if the readiness check passed when /readyz last ran, else 0",
    ["check"],
    multiprocess_mode="livemostrecent",
)


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


async def _budgets(limiters: Limiters) -> str | None:
    """The shared budget store's PING (bounded by its client's timeouts), or None without Redis."""
    shared = next((limiter for limiter in limiters.values() if isinstance(limiter, SharedWindows)), None)
    if shared is None:
        return None
    return "ok" if await shared.reachable() else "unreachable (Redis, SOUNDPOST_REDIS_URL)"


async def _pushes(settings: Settings) -> str | None:
    """S3 event pushes (with SOUNDPOST_EVENTS_TOKEN): whether the last sweep found uploads no push promoted."""
    return PUSHES.check(settings.events_token is not None)


async def run_checks(checks: dict[str, Awaitable[str | None]], deadline: float) -> dict[str, str]:
    """Every check at once; one that has not answered by the deadline is "timed out"."""
    tasks = {name: asyncio.ensure_future(check) for name, check in checks.items()}
    await asyncio.wait(tasks.values(), timeout=deadline)
    results: dict[str, str] = {}
    for name, task in tasks.items():
        if not task.done():
            task.cancel()
            results[name] = f"timed out (no answer within {deadline:g} s)"
        elif task.cancelled():
            results[name] = "timed out"
        elif (exc := task.exception()) is not None:
            logger.error("readiness check %s failed", name, exc_info=exc)
            results[name] = f"failed ({type(exc).__name__})"
        elif (result := task.result()) is not None:
            results[name] = result
    return results


async def readyz(request: Request) -> Response:
    state = resources(request)
    checks: dict[str, Awaitable[str | None]] = {
        "s3": _bucket(state["storage"]),
        "budgets": _budgets(state["limiters"]),
    }
    if isinstance(state["revocations"], SharedRevocations):
        checks["revocations"] = state["revocations"].check()
    for name, provider in state["providers"].items():
        checks[f"idp:{name}"] = provider.probe()
    checks["events"] = _pushes(state["settings"])
    results = await run_checks(checks, DEADLINE)
    for name, result in results.items():
        CHECK_OK.labels(name).set(1 if result == "ok" else 0)
    failed = {name: result for name, result in results.items() if result != "ok"}
    required = [name for name in failed if not name.startswith(OPTIONAL)]
    status = "not_ready" if required else "degraded" if failed else "ready"
    if failed:
        logger.warning("%s: %s", status.replace("_", " "), failed)
    return json_response(Readiness(status=status, checks=results), status_code=503 if required else 200)
