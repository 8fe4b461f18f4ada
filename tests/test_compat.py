"""The library internals kept in the two compat modules: each guard fails when the version or the shape relied on changes.

``service/http/compat.py`` (Starlette) and ``service/serving/compat.py`` (uvicorn) are the
only modules that touch library internals. After upgrading starlette or uvicorn in the
lock, these tests say whether each still fits; re-read the module against the new version's
source, then move its ``WRITTEN_AGAINST``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
from pathlib import Path
from typing import Any

import h11
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.http import compat as starlette_compat
from service.http.api import ApiRoute, Operation, Spec
from service.http.compat import ExactPathRoute
from service.serving import compat as uvicorn_compat
from service.serving.coalescing import CoalescingTransport


async def endpoint(request: Request) -> Response:
    return Response()


# --- starlette -----------------------------------------------------------------


def test_starlette_is_the_version_starlette_compat_was_written_against() -> None:
    """A new Starlette means re-reading service/http/compat.py against its source."""
    assert importlib.metadata.version("starlette") == starlette_compat.WRITTEN_AGAINST


@pytest.mark.parametrize(
    ("path", "root_path", "route_path"),
    [
        ("/api/me", "", "/api/me"),
        ("/sp/api/me", "/sp", "/api/me"),
        ("/sp", "/sp", ""),
        ("/api/me", "/sp", "/api/me"),  # a path outside the root path is left as it is
        ("/spx/api/me", "/sp", "/spx/api/me"),  # a prefix that is not a whole segment is not stripped
    ],
)
def test_get_route_path_strips_the_root_path_by_whole_segments(
    path: str, root_path: str, route_path: str
) -> None:
    """The private helper ExactPathRoute compares with keeps the root-path rule it was written for."""
    (parameter,) = inspect.signature(starlette_compat.get_route_path).parameters
    assert parameter == "scope"
    assert starlette_compat.get_route_path({"path": path, "root_path": root_path}) == route_path


SCOPES: list[dict[str, Any]] = [
    {"type": "http", "method": method, "path": path, "root_path": root, "path_params": params}
    for method in ("GET", "HEAD", "POST", "DELETE")
    for path, root in (
        ("/api/me", ""),
        ("/api/me/", ""),
        ("/api/you", ""),
        ("/sp/api/me", "/sp"),
        ("/api/me", "/sp"),
        ("/sp", "/sp"),
    )
    for params in ({}, {"outer": "1"})
] + [{"type": "websocket", "path": "/api/me", "root_path": "", "path_params": {}}]


@pytest.mark.parametrize("methods", [["GET"], ["POST"]])
@pytest.mark.parametrize(
    "scope", SCOPES, ids=lambda s: f"{s.get('method', 'ws')} {s['root_path']}{s['path']}"
)
def test_exact_path_route_matches_exactly_as_starlettes_route_does(
    methods: list[str], scope: dict[str, Any]
) -> None:
    """Same Match and same child scope as Starlette's own Route.matches, for every kind of request."""
    route = ExactPathRoute("/api/me", endpoint, methods=methods)
    assert route.matches(dict(scope)) == Route.matches(route, dict(scope))


def test_a_route_serves_an_asgi_endpoint_as_it_is() -> None:
    """ApiRoute hands Starlette an ASGI object, which Route serves without its request_response layer."""
    route = ApiRoute("/api/me", endpoint, method="GET", name="me", spec=Spec(summary="me"))
    assert isinstance(route.operation, Operation)
    assert route.app is route.operation


# --- uvicorn -------------------------------------------------------------------


class Unconnected(asyncio.Transport):
    """A transport with no socket behind it: enough for connection_made."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_uvicorn_is_the_version_uvicorn_compat_was_written_against() -> None:
    """A new uvicorn means re-reading service/serving/compat.py against its source."""
    assert importlib.metadata.version("uvicorn") == uvicorn_compat.WRITTEN_AGAINST


UVICORN = Path(uvicorn.__file__).parent
# Every method uvicorn's HTTP protocols call on their transport; CoalescingTransport writes and closes
# itself and hands the rest to the real transport.
TRANSPORT_CALLS = {
    "close",
    "get_extra_info",
    "is_closing",
    "pause_reading",
    "resume_reading",
    "set_protocol",
    "write",
}


def test_uvicorn_calls_only_the_transport_methods_coalescing_transport_was_written_for() -> None:
    """A transport method uvicorn starts (or stops) calling would go around the held writes: re-check them."""
    sources = [
        "protocols/http/httptools_impl.py",
        "protocols/http/h11_impl.py",
        "protocols/http/flow_control.py",
        "protocols/utils.py",
    ]
    called = set()
    for source in sources:
        called |= set(re.findall(r"transport\.([a-z_]+)\b", (UVICORN / source).read_text()))
    assert called == TRANSPORT_CALLS
    for name in ("write", "close", "is_closing"):
        assert name in vars(CoalescingTransport), name


@pytest.mark.parametrize(
    ("protocol_class", "hooks"),
    [
        (HttpToolsProtocol, {"connection_made": ["transport"], "data_received": ["data"],
                             "on_headers_complete": [], "on_message_complete": []}),
        (H11Protocol, {"connection_made": ["transport"], "data_received": ["data"]}),
    ],
)  # fmt: skip
def test_the_protocol_methods_the_subclasses_override_keep_their_signatures(
    protocol_class: type[asyncio.Protocol], hooks: dict[str, list[str]]
) -> None:
    """Each method service/serving/compat.py overrides still exists on uvicorn's class with the same parameters."""
    for name, parameters in hooks.items():
        method = vars(protocol_class).get(name)
        assert method is not None, f"{protocol_class.__name__}.{name} is gone"
        assert list(inspect.signature(method).parameters)[1:] == parameters, name


@pytest.mark.parametrize(
    "protocol_class", [uvicorn_compat.CoalescingHttpToolsProtocol, uvicorn_compat.CoalescingH11Protocol]
)
def test_a_protocol_keeps_the_wrapped_transport_and_its_parser_state_where_the_subclasses_read_them(
    protocol_class: type[asyncio.Protocol],
) -> None:
    """``self.loop``, ``self.transport`` and h11's ``self.conn`` are the attributes the subclasses use."""

    async def check() -> None:
        config = uvicorn.Config(endpoint, http=protocol_class, lifespan="off", ws="none")
        protocol: Any = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
        assert isinstance(protocol.loop, asyncio.AbstractEventLoop)
        transport = Unconnected()
        protocol.connection_made(transport)
        assert isinstance(protocol.transport, CoalescingTransport)
        assert protocol.transport.transport is transport
        if isinstance(protocol, H11Protocol):
            assert isinstance(protocol.conn, h11.Connection)
            assert protocol.conn.their_state is h11.IDLE

    asyncio.run(check())


def test_uvicorn_config_takes_the_options_protocol_options_passes() -> None:
    """No WebSockets, and h11's incomplete-event bound, are uvicorn.Config options of these names."""
    parameters = inspect.signature(uvicorn.Config).parameters
    assert {"http", "ws", "h11_max_incomplete_event_size"} <= set(parameters)
    assert uvicorn.Config(endpoint, h11_max_incomplete_event_size=123).h11_max_incomplete_event_size == 123
