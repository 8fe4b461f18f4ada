"""Starlette internals Soundpost relies on, kept here and nowhere else (written against starlette 1.10.0).

Kept for speed: Starlette tries each route's regex in turn for every request, and comparing a path
without parameters as a string saves about 1 µs on the presign route and 9 µs on /healthz;
tests/test_compat.py fails when the root-path rule or the shape of a route match changes.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.routing import Match, Route
from starlette.types import Scope

__all__ = ["WRITTEN_AGAINST", "ExactPathRoute", "get_route_path"]

WRITTEN_AGAINST = "1.10.0"


class ExactPathRoute(Route):
    """A Route that compares a path without parameters as a string, and matches as Starlette's Route otherwise."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's rule: the root path stripped, PARTIAL for another method (405), HEAD wherever GET is."""
        if self.param_convertors or scope["type"] != "http":
            return super().matches(scope)
        if get_route_path(scope) != self.path:
            return Match.NONE, {}
        child_scope = {"endpoint": self.endpoint, "path_params": dict(scope.get("path_params", {}))}
        return (Match.FULL if scope["method"] in (self.methods or ()) else Match.PARTIAL), child_scope
