"""What a browser does during sign-in, done with an HTTP client against real servers."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx


def start_login(client: httpx.Client, query: str = "") -> httpx.Response:
    """GET /auth/login; the answer should redirect to the identity provider."""
    return client.get(f"/auth/login{query}")


def approve_at_idp(authorize_url: str, user: str = "alice", action: str = "allow") -> str:
    """Submit the provider's login form; returns the callback URL it redirects to."""
    with httpx.Client() as idp:
        form_page = idp.get(authorize_url)
        assert form_page.status_code == 200, form_page.text
        fields = dict(re.findall(r"<input type=hidden name=(\S+) value='([^']*)'>", form_page.text))
        fields.update({"user": user, "action": action})
        answer = idp.post(authorize_url.split("?")[0], data=fields)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def follow_callback(client: httpx.Client, callback_url: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(
    client: httpx.Client, provider: str = "fake", user: str = "alice", next_path: str = ""
) -> httpx.Response:
    """The whole dance; returns the app's final answer to the callback."""
    query = f"?provider={provider}" + (f"&next={next_path}" if next_path else "")
    login = start_login(client, query)
    assert login.status_code == 302, login.text
    return follow_callback(client, approve_at_idp(login.headers["location"], user))


def approve_at_dev_idp(authorize_url: str, user: str = "alice") -> str:
    """Sign in at oidc-provider-mock (the dev command's provider); returns the callback URL it redirects to."""
    answer = httpx.post(authorize_url, data={"sub": user})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]
