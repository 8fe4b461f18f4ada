"""Sign-in with OAuth 2.0 / OpenID Connect through Authlib's Starlette client.

Authorization-code flow with state, nonce (OIDC) and PKCE S256. While a sign-in
is under way, Authlib keeps state, nonce and code verifier in the signed session
cookie, so any replica can finish a flow another one started. Once signed in, the
session holds identity only (provider, subject, email, name): never tokens.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx  # the HTTP client Authlib uses (it deprecates plain httpx)
import joserfc.errors
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, OAuthError
from authlib.integrations.starlette_client.apps import StarletteOAuth2App
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import keys
from service.api import Spec
from service.errors import ApiError, wants_html
from service.resources import resources
from service.schemas import Provider as ProviderOut
from service.schemas import ProviderList, User, json_response
from service.settings import Provider, Settings

logger = logging.getLogger("soundpost.auth")

SESSION_USER = "user"
SESSION_NEXT = "next"
IDP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def build_oauth(settings: Settings) -> OAuth:
    """Register every configured provider with one Authlib registry."""
    oauth = OAuth()
    for provider in settings.providers:
        client_kwargs: dict[str, Any] = {
            "scope": provider.scopes,
            "code_challenge_method": "S256",
            "timeout": IDP_TIMEOUT,
        }
        if provider.kind == "oidc":
            oauth.register(
                provider.name,
                client_id=provider.client_id,
                client_secret=str(provider.client_secret),
                server_metadata_url=provider.discovery_url,
                client_kwargs=client_kwargs,
            )
        else:
            oauth.register(
                provider.name,
                client_id=provider.client_id,
                client_secret=str(provider.client_secret),
                authorize_url=provider.authorize_url,
                access_token_url=provider.token_url,
                userinfo_endpoint=provider.userinfo_url,
                client_kwargs={**client_kwargs, "token_endpoint_auth_method": "client_secret_post"},
            )
    return oauth


_USER_READ = "soundpost.user"  # scope key: (session entry, user) from this request's first read


def current_user(request: Request) -> User | None:
    """The signed-in user, read once per request (the rate limiter and the route both ask)."""
    data = request.session.get(SESSION_USER)
    known: tuple[object, User | None] | None = request.scope.get(_USER_READ)
    if known is not None and known[0] is data:  # the same session entry as last time: the same user
        return known[1]
    user = _user_from(data)
    request.scope[_USER_READ] = (data, user)
    return user


def _user_from(data: object) -> User | None:
    if not isinstance(data, dict):
        return None
    try:
        provider, subject = str(data["p"]), str(data["s"])
    except KeyError:
        return None
    return User(
        provider=provider,
        subject=subject,
        user_id=keys.user_id(provider, subject),
        email=data.get("e"),
        name=data.get("n"),
    )


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise ApiError(401, "not_signed_in", "Sign in first.")
    return user


def safe_next(value: str | None, home: str = "/") -> str:
    """Only a same-origin absolute path is a place to land after sign-in; anything else is home."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return home
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return home
    return value


def _provider_for_login(settings: Settings, name: str | None) -> Provider:
    if name is None:
        if len(settings.providers) == 1:
            return settings.providers[0]
        names = ", ".join(p.name for p in settings.providers)
        raise ApiError(
            400, "provider_required", f"Choose a provider with ?provider= (one of: {names}).", "provider"
        )
    provider = settings.provider(name)
    if provider is None:
        raise ApiError(404, "unknown_provider", f"There is no identity provider called {name!r}.", "provider")
    return provider


def _client(request: Request, provider: Provider) -> StarletteOAuth2App:
    client = request.app.state.oauth.create_client(provider.name)
    assert isinstance(client, StarletteOAuth2App)
    return client


def _callback_url(settings: Settings, provider: Provider) -> str:
    return f"{settings.public_url}/auth/callback/{provider.name}"


def _idp_unreachable(provider: Provider, exc: Exception) -> ApiError:
    logger.warning("identity provider %s unreachable: %s", provider.name, type(exc).__name__)
    return ApiError(
        503,
        "identity_provider_unavailable",
        f"{provider.title} cannot be reached right now. Try again in a moment.",
        headers={"Retry-After": "5"},
    )


async def load_metadata(client: StarletteOAuth2App, ttl: int) -> None:
    """Make sure discovery metadata is at most ``ttl`` seconds old, fetching it again if not.

    Authlib caches the document forever; this bounds its age so a provider's key
    or endpoint change is picked up. A failed fetch raises and keeps the old copy,
    which is fetched again on the next call.
    """
    metadata = client.server_metadata
    loaded = metadata.get("_loaded_at")
    if not client._server_metadata_url or (loaded is not None and time.time() - loaded < ttl):
        return
    stale = dict(metadata)
    metadata.pop("_loaded_at", None)
    try:
        await client.load_server_metadata()
    except Exception:
        metadata.clear()
        metadata.update(stale)
        raise


async def login(request: Request) -> Response:
    settings = resources(request)["settings"]
    provider = _provider_for_login(settings, request.query_params.get("provider"))
    client = _client(request, provider)
    try:
        await load_metadata(client, settings.idp_metadata_ttl)
        response: Response = await client.authorize_redirect(request, _callback_url(settings, provider))
    except httpx.HTTPError as exc:
        raise _idp_unreachable(provider, exc) from None
    except (ValueError, KeyError, RuntimeError) as exc:  # discovery document unusable
        logger.warning("identity provider %s metadata unusable: %r", provider.name, exc)
        raise ApiError(
            502, "identity_provider_error", f"{provider.title} sent an unusable configuration."
        ) from None
    request.session[SESSION_NEXT] = safe_next(request.query_params.get("next"), settings.home)
    return response


async def callback(request: Request) -> Response:
    settings = resources(request)["settings"]
    provider = settings.provider(request.path_params["provider"])
    if provider is None:
        raise ApiError(404, "unknown_provider", "There is no such identity provider.")
    if request.query_params.get("error"):
        error = request.query_params["error"]
        code = "sign_in_denied" if error == "access_denied" else "sign_in_failed"
        raise ApiError(403, code, f"{provider.title} did not sign you in ({error}).")
    identity = await _complete_flow(request, provider)
    next_path = request.session.get(SESSION_NEXT, settings.home)
    # A fresh session: nothing from before sign-in survives it.
    request.session.clear()
    request.session[SESSION_USER] = identity
    return RedirectResponse(safe_next(next_path, settings.home), status_code=303)


async def _complete_flow(request: Request, provider: Provider) -> dict[str, str]:
    client = _client(request, provider)
    try:
        token = await client.authorize_access_token(request)
        if provider.kind == "oidc":
            claims = token.get("userinfo")
            if not claims:
                raise ApiError(502, "identity_provider_error", f"{provider.title} sent no ID token.")
            claims = dict(claims)
            if not claims.get("email") and client.server_metadata.get("userinfo_endpoint"):
                claims.update({k: v for k, v in (await client.userinfo(token=token)).items() if k != "sub"})
        else:
            response = await client.get(provider.userinfo_url, token=token)
            response.raise_for_status()
            claims = response.json()
    except OAuthError as exc:
        logger.info("sign-in with %s refused: %s", provider.name, exc.error)
        if exc.error == "mismatching_state":
            raise ApiError(
                400, "invalid_state", "This sign-in link is stale or was already used. Sign in again."
            ) from None
        raise ApiError(
            400, "sign_in_failed", f"{provider.title} refused the sign-in ({exc.error})."
        ) from None
    except (joserfc.errors.JoseError, AuthlibBaseError) as exc:
        logger.info("ID token from %s refused: %r", provider.name, exc)
        raise ApiError(
            401, "invalid_id_token", f"The ID token from {provider.title} is not valid ({exc})."
        ) from None
    except httpx.HTTPStatusError as exc:
        logger.warning("identity provider %s answered %s", provider.name, exc.response.status_code)
        raise ApiError(502, "identity_provider_error", f"{provider.title} answered with an error.") from None
    except httpx.HTTPError as exc:
        raise _idp_unreachable(provider, exc) from None
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("identity provider %s sent an unusable response: %r", provider.name, exc)
        raise ApiError(
            502, "identity_provider_error", f"{provider.title} sent an unusable response."
        ) from None
    return _identity(provider, claims)


def _identity(provider: Provider, claims: dict[str, Any]) -> dict[str, str]:
    """The session's record of who signed in: short keys keep the cookie small."""
    subject = claims.get("sub") or claims.get("id")
    if subject is None or str(subject) == "":
        raise ApiError(502, "identity_provider_error", f"{provider.title} did not say who you are.")
    identity = {"p": provider.name, "s": str(subject)[:255]}
    email = claims.get("email")
    name = claims.get("name") or claims.get("preferred_username") or claims.get("login")
    if isinstance(email, str) and email:
        identity["e"] = email[:255]
    if isinstance(name, str) and name:
        identity["n"] = name[:255]
    return identity


LOGOUT = Spec("End the session.", status=204, tag="auth")
ME = Spec("The signed-in user.", response=User, signed_in=True, tag="auth")
PROVIDERS = Spec("The identity providers one can sign in with.", response=ProviderList, tag="auth")


async def logout(request: Request) -> Response:
    request.session.clear()
    if wants_html(request):
        return RedirectResponse(resources(request)["settings"].home, status_code=303)
    return Response(status_code=204)


async def me(request: Request) -> Response:
    return json_response(require_user(request))


async def providers(request: Request) -> Response:
    settings = resources(request)["settings"]
    listed = ProviderList(
        [
            ProviderOut(p.name, p.title, f"{settings.root_path}/auth/login?provider={p.name}")
            for p in settings.providers
        ]
    )
    return json_response(listed)
