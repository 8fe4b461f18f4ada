"""Sign-in with OAuth 2.0 / OpenID Connect through Authlib's Starlette client.

Authorization-code flow with state, nonce (OIDC) and PKCE S256. While a sign-in
is under way, Authlib keeps state, nonce and code verifier in the signed session
cookie, so any replica can finish a flow another one started. That state lives
until the flow completes or SOUNDPOST_SIGN_IN_TIMEOUT passes: a provider that
cannot be reached at the code exchange leaves it in place, so the same callback
URL works once the provider is back. Once signed in, the session holds identity
only (provider, subject, email if verified, name) and a session id and sign-in
time that sign-out revokes (``service.identity.revocation``): never tokens.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx  # the HTTP client Authlib uses (it deprecates plain httpx)
import joserfc.errors
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuthError
from authlib.integrations.starlette_client.apps import StarletteOAuth2App
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.errors import ApiError
from service.http.api import Spec
from service.http.authentication import SESSION_USER, current_user, require_user, session_user
from service.http.handlers import wants_html
from service.http.params import decode_query
from service.identity.providers import PROBE_TIMEOUT, ProviderClient
from service.identity.revocation import RevocationUnavailable
from service.identity.session_identity import SessionIdentity, from_session, to_session
from service.resources import resources
from service.schemas import LogoutQuery, ProviderList, User, json_response
from service.schemas import Provider as ProviderOut
from service.settings import ENV_PREFIX, Provider, Settings

logger = logging.getLogger("soundpost.auth")

SESSION_NEXT = "next"
MAX_SUBJECT = 255  # OIDC Core 2: "It MUST NOT exceed 255 ASCII characters in length"
MAX_EMAIL = 254  # RFC 5321's limit on a forward path, less its angle brackets
OPERATOR_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})


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


def _provider_client(request: Request, provider: Provider) -> ProviderClient:
    return resources(request)["providers"][provider.name]


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


def _idp_error(provider: Provider, problem: str) -> ApiError:
    """The provider or its configuration is at fault: the operator hears it at ERROR, by name."""
    logger.error("identity provider %s: %s", provider.name, problem)
    return ApiError(502, "identity_provider_error", f"{provider.title} could not sign you in right now.")


async def _client(request: Request, provider: Provider) -> StarletteOAuth2App:
    """The provider's client with current metadata, or the 503/502 that says why not."""
    try:
        return await _provider_client(request, provider).current()
    except httpx.HTTPError as exc:
        raise _idp_unreachable(provider, exc) from None
    except ValueError as exc:  # not JSON, or a document without what sign-in needs
        key = f"{ENV_PREFIX}PROVIDER_{provider.name.upper()}_DISCOVERY_URL"
        raise _idp_error(provider, f"unusable discovery document at {key}: {exc}") from None


async def _live_client(request: Request, provider: Provider) -> StarletteOAuth2App:
    """The provider's client once the provider has answered now, within ``PROBE_TIMEOUT`` seconds: a
    cached discovery document is no proof the provider is up, so it is probed (a success within the last
    ``PROBE_WINDOW`` seconds stands); metadata past its age is fetched now, under the same bound."""
    holder = _provider_client(request, provider)
    if holder.fresh():
        reachable = await holder.probe()
        if reachable.startswith("unreachable"):
            logger.warning("identity provider %s unreachable at sign-in: %s", provider.name, reachable)
            raise ApiError(
                503,
                "identity_provider_unavailable",
                f"{provider.title} cannot be reached right now, so signing in is not possible. "
                "Try again in a moment.",
                headers={"Retry-After": "5"},
            )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await _client(request, provider)
    except TimeoutError as exc:
        raise _idp_unreachable(provider, exc) from None


async def login(request: Request) -> Response:
    settings = resources(request)["settings"]
    provider = _provider_for_login(settings, request.query_params.get("provider"))
    try:
        client = await _live_client(request, provider)
    except ApiError as exc:
        exc.link = ("Try again", _login_url(settings, provider))
        raise
    redirect_uri = _callback_url(settings, provider)
    try:
        authorization = await client.create_authorization_url(redirect_uri)
    except httpx.HTTPError as exc:
        raise _idp_unreachable(provider, exc) from None
    url = authorization.pop("url")
    # Authlib keeps this under the state in the session; "started" is ours, for the flow's own expiry.
    await client.save_authorize_data(
        request, redirect_uri=redirect_uri, started=int(time.time()), **authorization
    )
    request.session[SESSION_NEXT] = safe_next(request.query_params.get("next"), settings.home)
    return RedirectResponse(url, status_code=302)


async def callback(request: Request) -> Response:
    """Finish the flow; any failure offers a fresh sign-in, since a spent code cannot be used again."""
    settings = resources(request)["settings"]
    provider = settings.provider(request.path_params["provider"])
    if provider is None:
        raise ApiError(404, "unknown_provider", "There is no such identity provider.")
    try:
        return await _finish(request, settings, provider)
    except ApiError as exc:
        exc.link = ("Start again", _login_url(settings, provider))
        if not exc.detail.endswith("Sign in again."):
            exc.detail += " Start again from the sign-in page."
        raise


def _login_url(settings: Settings, provider: Provider) -> str:
    """Where a fresh sign-in with this provider starts."""
    return f"{settings.root_path}/auth/login?provider={provider.name}"


async def _finish(request: Request, settings: Settings, provider: Provider) -> Response:
    client = await _client(request, provider)
    _check_issuer(request, provider, client)
    if request.query_params.get("error"):
        error = request.query_params["error"]
        code = "sign_in_denied" if error == "access_denied" else "sign_in_failed"
        raise ApiError(403, code, f"{provider.title} did not sign you in ({error}).")
    identity = await _complete_flow(request, settings, provider, client)
    next_path = request.session.get(SESSION_NEXT, settings.home)
    # A fresh session: nothing from before sign-in survives it.
    request.session.clear()
    request.session[SESSION_USER] = identity
    return RedirectResponse(safe_next(next_path, settings.home), status_code=303)


def _check_issuer(request: Request, provider: Provider, client: StarletteOAuth2App) -> None:
    """RFC 9207: the authorization response names its issuer; it must be the provider we sent the user to."""
    if provider.kind != "oidc":
        return  # no issuer identifier is configured for a plain OAuth2 provider
    metadata = client.server_metadata
    given = request.query_params.get("iss")
    if given is None and metadata.get("authorization_response_iss_parameter_supported") is not True:
        return
    if given != metadata.get("issuer"):
        logger.warning(
            "sign-in response for %s names issuer %r, not %r", provider.name, given, metadata.get("issuer")
        )
        raise ApiError(
            400,
            "issuer_mismatch",
            f"This sign-in response does not come from {provider.title} (its issuer is "
            f"{'missing' if given is None else 'different'}). Sign in again.",
        )


async def _flow_state(request: Request, settings: Settings, client: StarletteOAuth2App) -> dict[str, Any]:
    """The state saved at login for this callback, if it is this browser's and not too old."""
    state = request.query_params.get("state")
    data = await client.framework.get_state_data(request.session, state) if state else None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_state", "This sign-in link is stale or was already used. Sign in again.")
    started = data.get("started")
    now = time.time()
    # A minute's grace for replicas whose clocks differ.
    if not isinstance(started, int) or not -60 <= now - started <= settings.sign_in_timeout:
        await client.framework.clear_state_data(request.session, state)
        raise ApiError(
            400,
            "sign_in_expired",
            f"This sign-in took longer than {settings.sign_in_timeout} seconds. Sign in again.",
        )
    return data


async def _complete_flow(
    request: Request, settings: Settings, provider: Provider, client: StarletteOAuth2App
) -> dict[str, Any]:
    data = await _flow_state(request, settings, client)
    keep_state = False
    try:
        claims = await _exchange(request, provider, client, data)
    except httpx.TransportError as exc:
        keep_state = True  # nothing was exchanged: the same callback can be tried again
        raise _idp_unreachable(provider, exc) from None
    finally:
        if not keep_state:
            await client.framework.clear_state_data(request.session, request.query_params.get("state"))
    return _identity(provider, claims)


async def _exchange(
    request: Request, provider: Provider, client: StarletteOAuth2App, data: dict[str, Any]
) -> dict[str, Any]:
    """The code for tokens, then the user's claims; every refusal as a clear error."""
    try:
        token = await client.fetch_access_token(
            redirect_uri=data.get("redirect_uri"),
            code=request.query_params.get("code", ""),
            code_verifier=data.get("code_verifier"),
        )
        if provider.kind == "oidc":
            return await _oidc_claims(provider, client, token, data)
        response = await client.get(provider.userinfo_url, token=token)
        response.raise_for_status()
        claims: dict[str, Any] = response.json()
        return claims
    except OAuthError as exc:
        if exc.error in OPERATOR_ERRORS:
            name = f"{ENV_PREFIX}PROVIDER_{provider.name.upper()}"
            raise _idp_error(
                provider, f"refused our client ({exc.error}): check {name}_CLIENT_ID and {name}_CLIENT_SECRET"
            ) from None
        logger.info("sign-in with %s refused: %s", provider.name, exc.error)
        raise ApiError(
            400, "sign_in_failed", f"{provider.title} refused the sign-in ({exc.error})."
        ) from None
    except (joserfc.errors.JoseError, AuthlibBaseError) as exc:
        logger.info("ID token from %s refused: %r", provider.name, exc)
        raise ApiError(
            401, "invalid_id_token", f"The ID token from {provider.title} is not valid ({exc})."
        ) from None
    except httpx.HTTPStatusError as exc:
        raise _idp_error(provider, f"answered {exc.response.status_code}") from None
    except httpx.TransportError:
        raise
    except httpx.HTTPError as exc:
        raise _idp_unreachable(provider, exc) from None
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:  # Authlib raises RuntimeError for gaps
        raise _idp_error(provider, f"unusable response: {exc!r}") from None


async def _oidc_claims(
    provider: Provider, client: StarletteOAuth2App, token: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """The ID token's claims (checked), completed from userinfo when they lack the email."""
    if "id_token" not in token:
        raise _idp_error(provider, "sent no ID token")
    claims = dict(await client.parse_id_token(token, nonce=data.get("nonce")))
    if not claims.get("email") and client.server_metadata.get("userinfo_endpoint"):
        info = dict(await client.userinfo(token=token))
        if info.get("sub") != claims.get("sub"):  # OIDC Core 5.3.2: such userinfo must not be used
            raise _idp_error(provider, "userinfo answered for a different subject than the ID token")
        claims.update(info)
    return claims


def _identity(provider: Provider, claims: dict[str, Any]) -> dict[str, Any]:
    """The session's record of who signed in (a ``SessionIdentity``, stored with its short keys).

    The subject is kept whole (an identity is never truncated); one longer than
    OIDC allows is refused. An email is kept only if the provider says it is verified.
    """
    subject = claims.get("sub") or claims.get("id")
    if subject is None or str(subject) == "":
        raise _idp_error(provider, "did not say who the user is (no sub or id)")
    if len(str(subject)) > MAX_SUBJECT:
        raise _idp_error(
            provider, f"sent a subject of {len(str(subject))} characters (at most {MAX_SUBJECT})"
        )
    email = claims.get("email")
    verified = (
        isinstance(email, str) and 0 < len(email) <= MAX_EMAIL and _verified(claims.get("email_verified"))
    )
    name = claims.get("name") or claims.get("preferred_username") or claims.get("login")
    identity = SessionIdentity(
        provider=provider.name,
        subject=str(subject),
        session_id=secrets.token_urlsafe(12),
        signed_in_ms=int(time.time() * 1000),
        email=email if verified and isinstance(email, str) else None,
        email_verified=verified,
        # A display name, not an identity: shortening it is harmless.
        name=name[:255] if isinstance(name, str) and name else None,
    )
    return to_session(identity)


def _verified(value: object) -> bool:
    """``email_verified`` is a boolean; a few providers send the string "true"."""
    return value is True or value == "true"


LOGOUT = Spec(
    "End the session; with everywhere=true, every session of the user signed in before now.",
    status=204,
    query=LogoutQuery,
    errors={503: ("revocation_unavailable",)},
    tag="auth",
)
ME = Spec("The signed-in user.", response=User, signed_in=True, tag="auth")
PROVIDERS = Spec("The identity providers one can sign in with.", response=ProviderList, tag="auth")


async def logout(request: Request) -> Response:
    """Revoke the session (or all the user's sessions), clear the cookie, and optionally sign out at the provider.

    A sign-out that Redis could not record answers 503 and keeps the cookie: this
    replica refuses the session already, and the same request again (with that
    cookie) sends what is still waiting for Redis.
    """
    state = resources(request)
    settings = state["settings"]
    everywhere = decode_query(request, LogoutQuery).everywhere
    identity = from_session(request.session.get(SESSION_USER))
    user = session_user(request, identity)  # also when signed out already: a retry must still reach Redis
    if user is not None and identity is not None:
        try:
            if _signed_out_already(request):
                await state["revocations"].flush()  # send only what still waits; a copy revokes nothing new
            elif everywhere:
                await state["revocations"].revoke_user(user.user_id)
            else:
                await state["revocations"].revoke_session(
                    identity.session_id, user.user_id, identity.signed_in_ms
                )
        except RevocationUnavailable:
            raise ApiError(
                503,
                "revocation_unavailable",
                "Signed out here, but other servers could not be told yet. Sign out again in a moment.",
                headers={"Retry-After": "5"},
            ) from None
    request.session.clear()
    if wants_html(request):
        end_session = await _end_session_url(request, settings, user)
        return RedirectResponse(end_session or settings.home, status_code=303)
    return Response(status_code=204)


def _signed_out_already(request: Request) -> bool:
    """Whether this replica refuses the session: then a sign-out (a retry, or a copy of the cookie) only sends
    what waits for Redis, so a copy cannot end the user's later sessions with everywhere=true."""
    try:
        return current_user(request) is None
    except ApiError:  # not read the sign-outs yet: signing out is still this session's to do
        return False


async def _end_session_url(request: Request, settings: Settings, user: User | None) -> str | None:
    """RP-initiated logout: the provider's end-session URL, if the provider is set up for it."""
    provider = settings.provider(user.provider) if user is not None else None
    if provider is None or not provider.end_session:
        return None
    try:
        client = await _provider_client(request, provider).current()
        if not client.server_metadata.get("end_session_endpoint"):
            logger.warning("identity provider %s has no end_session_endpoint", provider.name)
            return None
        logout_url = await client.create_logout_url(
            post_logout_redirect_uri=settings.public_origin + settings.home, client_id=provider.client_id
        )
    except (httpx.HTTPError, ValueError) as exc:
        logger.warning("identity provider %s: no end-session URL (%s)", provider.name, type(exc).__name__)
        return None
    url: str = logout_url["url"]
    return url


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
