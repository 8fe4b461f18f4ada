"""Schemathesis over every operation in /openapi.json against the running app, signed out and signed in.

Zero 5xx, and every response (status, content type, body, headers) as the document says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import routes
from service.core.budgets import BUDGETS
from service.http.api import ApiRoute
from tests.conftest import serve_app
from tests.support.flows import sign_in


@pytest.fixture
def fuzzed_app(app_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The app and a session cookie for alice; every budget is high enough not to hide other answers."""
    lifted = {f"SOUNDPOST_{budget.setting}": "100000/minute" for budget in BUDGETS}
    with (
        serve_app({**app_env, **lifted}) as url,
        httpx.Client(base_url=url) as c,
    ):
        assert sign_in(c, "fake", "alice").status_code == 303
        yield url, c.cookies["soundpost_session"]


# Loaded from its URL, schemathesis leaves out the operation that serves the document itself.
EVERY_OPERATION = sorted(
    f"{r.method} {r.path}" for r in routes() if isinstance(r, ApiRoute) and r.path != "/openapi.json"
)


# Not checked: that every schema-valid request is accepted. Which audio types are accepted is a
# deployment setting (SOUNDPOST_ALLOWED_TYPES), so a well-formed but unaccepted type is a 422 by design.
# Every other check runs: no 5xx, documented statuses and content types, bodies matching their schema.


def fuzz(url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation's generated cases; returns the operations that were exercised."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here, which is the test failing

        @given(operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        run()
        exercised.append(operation.label)
    return sorted(exercised)


def test_signed_out_every_operation_conforms_and_never_5xx(fuzzed_app: tuple[str, str]) -> None:
    """Anonymous traffic of any shape is answered as documented."""
    assert fuzz(fuzzed_app[0], {}) == EVERY_OPERATION


def test_signed_in_every_operation_conforms_and_never_5xx(fuzzed_app: tuple[str, str]) -> None:
    """Alice's traffic of any shape is answered as documented."""
    url, cookie = fuzzed_app
    assert fuzz(url, {"Cookie": f"soundpost_session={cookie}"}) == EVERY_OPERATION
