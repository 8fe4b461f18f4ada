"""Each identity provider's Authlib client, with OIDC discovery metadata of a bounded age.

Authlib's ``load_server_metadata()`` fetches a discovery document once per client
and keeps it for the client's life. So the age is ours: when the metadata is
older than SOUNDPOST_IDP_METADATA_TTL, a fresh client is built through Authlib's
public registry (``OAuth().register``) and loads the document itself; the old
client stays in use until the new one has loaded a usable document. A
document without the endpoints sign-in needs is refused here, by name, instead
of failing later inside Authlib.

Readiness and each sign-in ask ``probe()``: a successful fetch (by a probe or a
sign-in) stands for ``PROBE_WINDOW`` seconds, after which the document (or, for a
plain OAuth2 provider, the authorize endpoint) is fetched again, one fetch at a
time per provider shared by every caller waiting for it, each bounded by
``PROBE_TIMEOUT``. A failure is not
remembered (and a failed fetch by a sign-in ends the window early), so ``/readyz`` shows a provider down within ``PROBE_WINDOW`` seconds
and back at the next check after it returns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2 as httpx  # the HTTP client Authlib uses (it deprecates plain httpx)
from authlib.integrations.starlette_client import OAuth
from authlib.integrations.starlette_client.apps import StarletteOAuth2App

from service.settings import Provider, Settings

IDP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
PROBE_WINDOW = 5.0  # seconds a readiness result stands before the provider is asked again
PROBE_TIMEOUT = 3.0  # seconds a readiness probe may take


class UnusableMetadata(ValueError):
    """The discovery document lacks something sign-in needs; the message names it."""


def check_metadata(metadata: dict[str, Any]) -> None:
    """Refuse a discovery document that sign-in could not complete with."""
    missing = [name for name in REQUIRED_METADATA if not isinstance(metadata.get(name), str)]
    if missing:
        raise UnusableMetadata(f"the discovery document has no {', '.join(missing)}")


def new_client(provider: Provider) -> StarletteOAuth2App:
    """A fresh Authlib client for the provider, from Authlib's public registry."""
    client_kwargs: dict[str, Any] = {
        "scope": provider.scopes,
        "code_challenge_method": "S256",
        "timeout": IDP_TIMEOUT,
    }
    endpoints: dict[str, Any]
    if provider.kind == "oidc":
        endpoints = {"server_metadata_url": provider.discovery_url}
    else:
        endpoints = {
            "authorize_url": provider.authorize_url,
            "access_token_url": provider.token_url,
            "userinfo_endpoint": provider.userinfo_url,
        }
        client_kwargs.update({"token_endpoint_auth_method": "client_secret_post"})
    client = OAuth().register(
        provider.name,
        client_id=provider.client_id,
        client_secret=str(provider.client_secret),
        client_kwargs=client_kwargs,
        **endpoints,
    )
    assert isinstance(client, StarletteOAuth2App)
    return client


class ProviderClient:
    """One provider's current Authlib client and how old its metadata is."""

    def __init__(self, provider: Provider, ttl: int, clock: Any = time.monotonic) -> None:
        self.provider = provider
        self.ttl = ttl
        self.clock = clock
        self.client = new_client(provider)
        self.loaded_at: float | None = None  # our clock, when the client's metadata was fetched
        self.lock = asyncio.Lock()
        self.probed_at: float | None = None  # when a fetch last succeeded
        self.last_probe: tuple[float, str] | None = None  # when the last probe finished, and its result

    def fresh(self) -> bool:
        if self.provider.kind != "oidc":
            return True  # endpoints come from the settings: nothing to load
        return self.loaded_at is not None and self.clock() - self.loaded_at < self.ttl

    async def current(self) -> StarletteOAuth2App:
        """The client, its metadata at most ``ttl`` seconds old (fetched again if not).

        Raises ``httpx.HTTPError`` if the provider cannot be reached and
        ``ValueError`` (``UnusableMetadata``) if its document is unusable.
        """
        if not self.fresh():
            async with self.lock:
                if not self.fresh():  # another request may have loaded it meanwhile
                    await self.reload()
        return self.client

    async def reload(self) -> None:
        """Fetch the discovery document into a fresh client; only a usable one replaces the current."""
        client = new_client(self.provider)
        try:
            metadata = await client.load_server_metadata()
            check_metadata(metadata)
        except BaseException:
            self.probed_at = None  # a failed fetch is news for readiness too
            raise
        self.client, self.loaded_at = client, self.clock()
        self.probed_at = self.loaded_at

    def probed_recently(self) -> bool:
        return self.probed_at is not None and self.clock() - self.probed_at < PROBE_WINDOW

    async def probe(self) -> str:
        """Whether the provider answers now: "ok" if it did within ``PROBE_WINDOW`` seconds, else one bounded
        fetch (the discovery document, or the authorize endpoint of a plain OAuth2 provider), shared by every
        caller waiting meanwhile."""
        if self.probed_recently():
            return "ok"
        asked_at = self.clock()
        async with self.lock:
            if self.probed_recently():  # loaded while this probe waited for the lock
                return "ok"
            if self.last_probe is not None and self.last_probe[0] >= asked_at:
                return self.last_probe[1]  # another caller's probe finished while this one waited
            result = await self.probe_now()
            self.last_probe = (self.clock(), result)
            return result

    async def probe_now(self) -> str:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                if self.provider.kind == "oidc":
                    await self.reload()
                else:
                    await self.reach(self.provider.authorize_url)
        except (TimeoutError, httpx.HTTPError) as exc:
            return f"unreachable ({type(exc).__name__})"
        except ValueError as exc:  # not JSON, or not a usable document
            return f"unusable ({exc})" if isinstance(exc, UnusableMetadata) else "unusable (not JSON)"
        return "ok"

    async def reach(self, url: str | None) -> None:
        """Any HTTP answer from the endpoint the browser is sent to shows the provider is up."""
        if url is None:
            return
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            await client.get(
                url
            )  # GET, not HEAD: some providers route HEAD oddly; no parameters, no side effect
        self.probed_at = self.clock()


def provider_clients(settings: Settings) -> dict[str, ProviderClient]:
    """One ``ProviderClient`` per configured provider, by name."""
    return {p.name: ProviderClient(p, settings.idp_metadata_ttl) for p in settings.providers}
