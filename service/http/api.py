"""The JSON API's one registry: routes that carry their own contract.

Every JSON endpoint is an ``ApiRoute``: the routing table in ``service/app.py``
lists it, and ``/openapi.json`` is generated from the same objects and the
msgspec Structs they name. A route cannot be served without being described,
and the description cannot drift from the types that validate requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from service.core.budgets import Budget
from service.errors import ErrorResponse
from service.http.compat import ExactPathRoute
from service.http.ratelimit import enforcer

Endpoint = Callable[[Request], Awaitable[Response]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Spec:
    """What one operation takes and gives, for validation and for the schema alike."""

    summary: str
    response: Any = None  # a msgspec-describable type; None for an empty body
    status: int = 200
    body: Any = None  # the JSON request body's type
    query: Any = None  # a Struct whose fields are the query parameters
    path: Any = None  # a Struct whose fields are the path parameters
    signed_in: bool = False
    budget: Budget | None = None  # what the route spends (service.core.budgets): per user, before it runs
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    media_type: str = "application/json"
    also: Mapping[int, Any] = field(default_factory=dict)  # other statuses with a non-error body
    tag: str = "api"


class Operation:
    """An endpoint served as plain ASGI, which Starlette's Route does for any endpoint that is not a function.

    A function endpoint would be wrapped in Starlette's ``request_response``, whose
    own exception-handling layer wraps ``send`` once more on every request; an
    error raised here reaches the edge layer instead, which answers it with the
    same handler. A route with a per-user budget spends one unit of it before the endpoint runs.
    """

    __slots__ = ("endpoint", "limit")

    def __init__(self, endpoint: Endpoint, limit: Callable[[Request], Awaitable[None]] | None) -> None:
        self.endpoint = endpoint
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        if self.limit is not None:
            await self.limit(request)
        response = await self.endpoint(request)
        await response(scope, receive, send)


class ApiRoute(ExactPathRoute):
    """A route with one method and a ``Spec``; a per-user budget is spent before the endpoint runs."""

    def __init__(self, path: str, endpoint: Endpoint, *, method: str, name: str, spec: Spec) -> None:
        self.spec = spec
        self.method = method
        budget = spec.budget
        # A per-upload budget is spent by the endpoint, which knows the upload and the cost.
        limit = enforcer(budget) if budget is not None and budget.per == "user" else None
        self.operation = Operation(endpoint, limit)
        super().__init__(path, self.operation, methods=[method], name=name)

    def error_codes(self) -> dict[int, tuple[str, ...]]:
        """Every error this operation can answer with, including the ones every route shares."""
        codes: dict[int, list[str]] = {}

        def add(status: int, *names: str) -> None:
            for name in names:
                if name not in codes.setdefault(status, []):
                    codes[status].append(name)

        if self.spec.body is not None:
            add(400, "malformed_json")
            add(413, "body_too_large")
            add(415, "unsupported_media_type")
            add(422, "validation_error")
        if self.spec.query is not None or self.spec.path is not None:
            add(422, "validation_error")
        if self.spec.signed_in:
            add(401, "not_signed_in")
            add(503, "revocations_unavailable")  # this replica has not read the sign-outs from Redis yet
        if self.method in UNSAFE_METHODS:
            add(403, "cross_site_request")
        if self.spec.budget is not None:
            add(429, "rate_limited")
            add(503, "rate_limiter_unavailable")
        for status, names in self.spec.errors.items():
            add(status, *names)
        return {status: tuple(names) for status, names in sorted(codes.items())}


def _params(where: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": {k: v for k, v in prop.items() if k not in ("description", "examples")},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _error_schema(codes: tuple[str, ...]) -> dict[str, Any]:
    """The shared error shape, with ``code`` narrowed to the codes this status can carry."""
    return {
        "allOf": [{"$ref": "#/components/schemas/ErrorResponse"}],
        "properties": {"error": {"properties": {"code": {"enum": list(codes)}}}},
    }


def document(
    routes: Iterable[BaseRoute], *, title: str, version: str, server: str, cookie: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every ``ApiRoute`` among ``routes``."""
    api_routes = [r for r in routes if isinstance(r, ApiRoute)]
    types: list[Any] = [ErrorResponse]
    for route in api_routes:
        spec = route.spec
        types += [
            t for t in (spec.response, spec.body, spec.query, spec.path, *spec.also.values()) if t is not None
        ]
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template="#/components/schemas/{name}")
    schema_of = dict(zip(unique, schemas, strict=True))

    def component(kind: Any) -> dict[str, Any]:
        """A Struct's own properties (parameters are listed one by one, not by reference)."""
        ref: str = schema_of[kind]["$ref"]
        return dict(components[ref.rsplit("/", 1)[1]])

    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes:
        spec = route.spec
        parameters = []
        if spec.path is not None:
            parameters += _params("path", component(spec.path))
        if spec.query is not None:
            parameters += _params("query", component(spec.query))
        responses: dict[str, Any] = {}
        if spec.response is None:
            responses[str(spec.status)] = {"description": HTTPStatus(spec.status).phrase}
        else:
            body_schema = (
                schema_of[spec.response] if spec.media_type == "application/json" else {"type": "string"}
            )
            responses[str(spec.status)] = {
                "description": HTTPStatus(spec.status).phrase,
                "content": {spec.media_type: {"schema": body_schema}},
            }
        for status, kind in spec.also.items():
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": schema_of[kind]}},
            }
        for status, codes in route.error_codes().items():
            responses[str(status)] = {
                "description": f"{HTTPStatus(status).phrase}: " + ", ".join(f"`{c}`" for c in codes),
                "content": {"application/json": {"schema": _error_schema(codes)}},
            }
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": spec.summary,
            "tags": [spec.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if spec.signed_in:
            operation["security"] = [{"session": []}]
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[spec.body]}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": cookie,
                    "description": "The signed session cookie set by sign-in.",
                },
            },
        },
    }


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")
