"""/openapi.json: generated from the route registry and the msgspec Structs, never written by hand."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Mount, Route

from service.app import routes
from service.http.api import ApiRoute
from service.schemas import PresignRequest

# Routes that answer with pages or redirects rather than JSON, and so are not API operations.
PAGE_ROUTES = {"index", "login", "callback", "static"}


@pytest.fixture
def document(client: httpx.Client) -> dict[str, object]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    return answer.json()  # type: ignore[no-any-return]


def test_every_route_is_an_api_route_or_a_known_page() -> None:
    """A new JSON route cannot be left out of the schema: it must be an ApiRoute to be served."""
    for route in routes():
        assert isinstance(route, (Route, Mount))
        assert isinstance(route, ApiRoute) or route.name in PAGE_ROUTES, route.name


def test_the_document_is_openapi_3_1_and_lists_every_api_route(
    document: dict[str, object], app_url: str
) -> None:
    """Each ApiRoute appears under its path and method, with its name as the operation id."""
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": app_url}]
    paths = document["paths"]
    assert isinstance(paths, dict)
    listed = {(path, method, op["operationId"]) for path, ops in paths.items() for method, op in ops.items()}
    expected = {(r.path, r.method.lower(), r.name) for r in routes() if isinstance(r, ApiRoute)}
    assert listed == expected


def test_the_presign_body_schema_comes_from_the_struct(document: dict[str, object]) -> None:
    """Field names, constraints and required fields are those of PresignRequest."""
    components = document["components"]["schemas"]  # type: ignore[index]
    schema = components["PresignRequest"]
    assert set(schema["properties"]) == {"filename", "contentType", "size", "checksumSha256"}
    assert schema["required"] == ["filename", "contentType"]
    assert schema["properties"]["filename"]["maxLength"] == 1024
    assert schema["additionalProperties"] is False  # forbid_unknown_fields
    operation = document["paths"]["/api/upload/presigned-url"]["post"]  # type: ignore[index]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PresignRequest"
    }
    assert PresignRequest.__name__ in components


def test_errors_are_documented_with_their_codes(document: dict[str, object]) -> None:
    """Every error status of an operation names the codes it can carry, in the one error shape."""
    responses = document["paths"]["/api/upload/presigned-url"]["post"]["responses"]  # type: ignore[index]
    assert set(responses) == {"200", "400", "401", "403", "413", "415", "422", "429", "503"}

    def codes(status: str) -> list[str]:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorResponse"}]
        return schema["properties"]["error"]["properties"]["code"]["enum"]  # type: ignore[no-any-return]

    assert codes("401") == ["not_signed_in"]
    assert codes("403") == ["cross_site_request"]
    assert codes("413") == ["body_too_large", "file_too_large", "quota_exceeded"]
    assert set(codes("422")) == {"validation_error", "unsupported_type", "extension_mismatch"}
    assert codes("429") == ["rate_limited", "too_many_pending_uploads"]
    # the budget and the quota ledger are in Redis, which may be down; a replica may not have read the
    # sign-outs from it yet
    assert set(codes("503")) == {"rate_limiter_unavailable", "limits_unavailable", "revocations_unavailable"}
    error = document["components"]["schemas"]["ErrorBody"]  # type: ignore[index]
    assert set(error["properties"]) == {"code", "detail", "path"}


def test_signed_in_operations_declare_the_session_cookie(document: dict[str, object]) -> None:
    """Operations that need a session say so, and the cookie's name is the configured one."""
    me = document["paths"]["/api/me"]["get"]  # type: ignore[index]
    assert me["security"] == [{"session": []}]
    scheme = document["components"]["securitySchemes"]["session"]  # type: ignore[index]
    assert (scheme["in"], scheme["name"]) == ("cookie", "soundpost_session")
    assert "security" not in document["paths"]["/api/providers"]["get"]  # type: ignore[index]
