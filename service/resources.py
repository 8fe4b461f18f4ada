"""What the lifespan opens, as a request sees it: typed, and one dict lookup away.

The lifespan yields these (``service.app.create_app``); Starlette and uvicorn copy
that state into every request's scope (the ASGI lifespan-state extension).
Reading it there is a dict lookup with a type, where ``request.app.state.x``
is untyped and goes through ``State.__getattr__`` after a failed attribute
lookup: 0.6 µs each, and a presign needed three.
"""

from __future__ import annotations

from typing import TypedDict, cast

from starlette.requests import HTTPConnection

from service.identity.providers import ProviderClient
from service.identity.revocation import Revocations
from service.limits.reservations import Reservations
from service.limits.windows import Limiters
from service.settings import Settings
from service.storage.client import Storage
from service.webhooks import WebhookSender


class Resources(TypedDict):
    settings: Settings
    storage: Storage
    webhooks: WebhookSender | None
    limiters: Limiters
    providers: dict[str, ProviderClient]  # by name
    revocations: Revocations
    reservations: Reservations


def resources(connection: HTTPConnection) -> Resources:
    """This request's view of the lifespan's resources."""
    return cast("Resources", connection.scope["state"])
