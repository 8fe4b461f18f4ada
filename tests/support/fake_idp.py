"""A small but strict identity provider for tests, served over real HTTP on 127.0.0.1.

It speaks OpenID Connect (discovery, authorize, token, JWKS, userinfo) or the
GitHub-style OAuth2 dialect (no ID token; ``/user`` answers with a numeric ``id``).
Unlike many mock providers it *checks* what a careful client must send: the
redirect URI, the client secret, single-use codes, and PKCE S256. Knobs let a test
make it misbehave the ways real providers do: expired or future-dated ID tokens,
a wrong nonce, broken token responses.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import serve_asgi

CLIENT_ID = "soundpost-test"
CLIENT_SECRET = "soundpost-test-secret"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@example.com", "name": "Alice Example", "github_id": 1001},
    "bob": {"email": "bob@example.com", "name": "Bob Example", "github_id": 1002},
}


@dataclass
class Knobs:
    """How the provider misbehaves; every field's default is correct behaviour."""

    id_token_exp_offset: int = 300
    id_token_iat_offset: int = 0
    nonce: str | None = None  # replaces the nonce the client sent
    omit_id_token: bool = False
    token_status: int | None = None
    token_body: str | None = None
    subject: str | None = None  # replaces the user's name as the ID token's and userinfo's sub
    userinfo_subject: str | None = None  # replaces the sub in userinfo only
    omit_email_in_id_token: bool = False  # so that the client asks userinfo
    email_verified: bool | None = True  # None: the claim is left out
    omit_jwks_uri: bool = False
    advertise_iss: bool = False  # authorization_response_iss_parameter_supported (RFC 9207)
    response_iss: str | None = None  # the iss the authorization response carries ("" = the real issuer)


@dataclass
class FakeIdP:
    kind: Literal["oidc", "github"] = "oidc"
    base_url: str = ""
    knobs: Knobs = field(default_factory=Knobs)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    discovery_requests: int = 0
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "test-key"}))

    def reset(self) -> None:
        self.knobs = Knobs()
        self.authorize_requests.clear()
        self.token_requests.clear()

    @contextlib.contextmanager
    def serve(self, port: int = 0) -> Iterator[str]:
        """Serve this provider over HTTP on 127.0.0.1 (on ``port`` to come back where it was)."""

        def make(base_url: str) -> Starlette:
            self.base_url = base_url
            return self.app()

        with serve_asgi(make, port=port) as url:
            yield url

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/userinfo", self.userinfo),
                Route("/user", self.userinfo),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        if self.kind != "oidc":
            return Response(status_code=404)
        self.discovery_requests += 1
        document: dict[str, Any] = {
            "issuer": self.base_url,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "userinfo_endpoint": f"{self.base_url}/userinfo",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }
        if self.knobs.omit_jwks_uri:
            del document["jwks_uri"]
        if self.knobs.advertise_iss:
            document["authorization_response_iss_parameter_supported"] = True
        return JSONResponse(document)

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "GET":
            self.authorize_requests.append(params)
            if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
                return HTMLResponse("bad client or response type", status_code=400)
            hidden = "".join(
                f"<input type=hidden name={html.escape(k)} value='{html.escape(v)}'>"
                for k, v in params.items()
            )
            return HTMLResponse(
                f"<form method=post>{hidden}<input name=user><button name=action value=allow>Sign in</button>"
                "<button name=action value=deny>Deny</button></form>"
            )
        form = dict(await request.form())
        redirect_uri, state = str(form["redirect_uri"]), str(form.get("state", ""))
        if form.get("action") == "deny":
            return RedirectResponse(
                f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}", 302
            )
        code = secrets.token_urlsafe(16)
        self.codes[code] = {k: str(v) for k, v in form.items()}
        answer = {"code": code, "state": state}
        if self.knobs.response_iss is not None:
            answer["iss"] = self.knobs.response_iss or self.base_url
        return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", 302)

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        if self.knobs.token_status is not None:
            return Response(
                self.knobs.token_body or "",
                status_code=self.knobs.token_status,
                media_type="application/json",
            )
        if self.knobs.token_body is not None:
            return Response(self.knobs.token_body, media_type="application/json")
        if not self._client_authenticated(request, form):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if not _pkce_matches(grant, form.get("code_verifier")):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE check failed"}, status_code=400
            )
        user = USERS[grant["user"]]
        access_token = secrets.token_urlsafe(24)
        self.tokens[access_token] = grant["user"]
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}
        if self.kind == "oidc" and not self.knobs.omit_id_token:
            now = int(time.time())
            claims = {
                "iss": self.base_url,
                "sub": self.knobs.subject or grant["user"],
                "aud": CLIENT_ID,
                "iat": now + self.knobs.id_token_iat_offset,
                "exp": now + self.knobs.id_token_exp_offset,
                "nonce": self.knobs.nonce or grant.get("nonce", ""),
                "name": user["name"],
                **self._email_claims(user),
            }
            if self.knobs.omit_email_in_id_token:
                claims = {k: v for k, v in claims.items() if not k.startswith("email")}
            body["id_token"] = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)
        return JSONResponse(body)

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            given = base64.b64decode(basic[6:]).decode()
            return given == f"{CLIENT_ID}:{CLIENT_SECRET}"
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        name = self.tokens.get(token)
        if name is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        user = USERS[name]
        if self.kind == "github":
            return JSONResponse(
                {"id": user["github_id"], "login": name, "name": user["name"], "email": user["email"]}
            )
        subject = self.knobs.userinfo_subject or self.knobs.subject or name
        return JSONResponse({"sub": subject, "name": user["name"], **self._email_claims(user)})

    def _email_claims(self, user: dict[str, Any]) -> dict[str, Any]:
        claims: dict[str, Any] = {"email": user["email"]}
        if self.knobs.email_verified is not None:
            claims["email_verified"] = self.knobs.email_verified
        return claims


def _pkce_matches(grant: dict[str, str], verifier: str | None) -> bool:
    """RFC 7636 S256: the verifier must hash to the challenge sent to /authorize."""
    if grant.get("code_challenge_method") != "S256" or not verifier:
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant.get("code_challenge")
