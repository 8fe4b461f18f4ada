"""Settings: read from the environment once, validated once, frozen.

Every setting is a ``SOUNDPOST_*`` variable, declared once as a field of
``Settings`` (the settings table: variable, default, bounds, one line of
meaning). ``load_settings`` collects every problem before failing, so an
operator fixes a broken deployment in one pass instead of one restart per typo. Secrets are wrapped in ``Secret`` so they never
show in a repr, a traceback or a log line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import limits

from service.core.audio_types import CANONICAL_TYPES, canonical_type
from service.core.budgets import BUDGETS, Budget
from service.core.secret import Secret

T = TypeVar("T")
# How browsers send a simple upload: a POST policy, a presigned PUT, or whichever the store supports.
UploadMethod = Literal["auto", "post", "put"]
UPLOAD_METHODS: tuple[UploadMethod, ...] = ("auto", "post", "put")

ENV_PREFIX = "SOUNDPOST_"
DEFAULT_ALLOWED_TYPES = tuple(CANONICAL_TYPES)
MiB = 1024 * 1024
# S3 refuses a single POST upload above 5 GiB, and a single CopyObject too: promotion copies each
# upload in one request, so SOUNDPOST_MAX_UPLOAD_BYTES stays at or below this (no UploadPartCopy needed).
S3_MAX_POST_BYTES = 5 * 1024 * MiB
# S3 refuses parts (all but the last) under 5 MiB and over 5 GiB, and more than 10,000 of them.
S3_MIN_PART_BYTES = 5 * MiB
S3_MAX_PART_BYTES = 5 * 1024 * MiB
S3_MAX_PARTS = 10_000
# The smallest part a test may ask for, with an S3 stand-in told to accept it.
TEST_MIN_PART_BYTES = 1024
MAX_PRESIGN_TTL = 3600
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
EVENTS_PATH = "/api/events/s3"
# Goes into a query string as it is (stores whose push endpoints cannot send headers), so URL-safe only.
EVENTS_TOKEN = re.compile(r"^[A-Za-z0-9._~\-]{32,256}$")


class SettingsError(ValueError):
    """Raised at start-up; the message names every bad setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Provider:
    """One identity provider: OIDC through discovery, or GitHub-style OAuth2."""

    name: str
    kind: Literal["oidc", "oauth2"]
    title: str
    client_id: str
    client_secret: Secret
    scopes: str
    discovery_url: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None
    end_session: bool = False  # sign-out also ends the session at the provider (OIDC only)


class _Reader:
    """Reads typed values out of the environment, remembering every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(ENV_PREFIX + name)
        return value.strip() if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{ENV_PREFIX}{name} is required")
            return ""
        return value

    def parsed(self, name: str, default: T, parse: Callable[[str], T], hint: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{ENV_PREFIX}{name} must be {hint}, got {value!r}")
            return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        number = self.parsed(name, default, int, "a whole number")
        if not low <= number <= high:
            self.problems.append(f"{ENV_PREFIX}{name} must be between {low} and {high}, got {number}")
        return number

    def url(self, name: str, *, required: bool = False) -> str | None:
        value = self.required(name) if required else self.raw(name)
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{ENV_PREFIX}{name} must be an http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            self.problems.append(f"{ENV_PREFIX}{name} must not have a query or fragment")
        return value.rstrip("/")

    def csv(self, name: str) -> tuple[str, ...] | None:
        value = self.raw(name)
        if value is None:
            return None
        return tuple(item.strip() for item in value.split(",") if item.strip())


# The variables each provider named in SOUNDPOST_PROVIDERS reads, as SOUNDPOST_PROVIDER_<NAME>_<suffix>.
PROVIDER_SETTINGS: Mapping[str, str] = {
    "KIND": "oidc (discovery, the default) or oauth2 (endpoints one by one)",
    "TITLE": "label on the sign-in button (default: the name, title-cased)",
    "CLIENT_ID": "client id issued by the provider (required)",
    "CLIENT_SECRET": "client secret issued by the provider (required)",
    "SCOPES": "scopes asked for (a default per kind; never openid for oauth2)",
    "DISCOVERY_URL": "the provider's discovery document (required for oidc)",
    "END_SESSION": "sign-out also ends the session at the provider (oidc only, default false)",
    "AUTHORIZE_URL": "authorization endpoint (required for oauth2)",
    "TOKEN_URL": "token endpoint (required for oauth2)",
    "USERINFO_URL": "profile endpoint; its sub or id identifies the user (required for oauth2)",
}


def _provider(read: _Reader, name: str) -> Provider | None:
    if not PROVIDER_NAME.match(name):
        read.problems.append(f"{ENV_PREFIX}PROVIDERS: {name!r} must be lowercase letters, digits or _")
        return None
    key = f"PROVIDER_{name.upper()}_"
    kind = read.raw(key + "KIND") or "oidc"
    if kind not in ("oidc", "oauth2"):
        read.problems.append(f"{ENV_PREFIX}{key}KIND must be oidc or oauth2, got {kind!r}")
        return None
    client_id = read.required(key + "CLIENT_ID")
    client_secret = Secret(read.required(key + "CLIENT_SECRET"))
    title = read.raw(key + "TITLE") or name.replace("_", " ").title()
    if kind == "oidc":
        return Provider(
            name=name,
            kind="oidc",
            title=title,
            client_id=client_id,
            client_secret=client_secret,
            scopes=read.raw(key + "SCOPES") or "openid email profile",
            discovery_url=read.url(key + "DISCOVERY_URL", required=True),
            end_session=read.parsed(key + "END_SESSION", False, _boolean, "true or false"),
        )
    scopes = read.raw(key + "SCOPES") or "read:user user:email"
    if "openid" in scopes.split():
        # Without an ID token check, "openid" would ask for one and never verify it.
        read.problems.append(
            f"{ENV_PREFIX}{key}SCOPES must not include openid for a kind=oauth2 provider "
            f"(use {ENV_PREFIX}{key}KIND=oidc with a discovery URL for OpenID Connect)"
        )
    if read.raw(key + "END_SESSION") is not None:
        read.problems.append(f"{ENV_PREFIX}{key}END_SESSION applies to kind=oidc providers only")
    return Provider(
        name=name,
        kind="oauth2",
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        authorize_url=read.url(key + "AUTHORIZE_URL", required=True),
        token_url=read.url(key + "TOKEN_URL", required=True),
        userinfo_url=read.url(key + "USERINFO_URL", required=True),
    )


def _providers(read: _Reader) -> tuple[Provider, ...]:
    names = read.csv("PROVIDERS") or ()
    if not names:
        read.problems.append(f"{ENV_PREFIX}PROVIDERS must name at least one identity provider")
    if len(set(names)) != len(names):
        read.problems.append(f"{ENV_PREFIX}PROVIDERS names a provider twice")
    return tuple(p for p in (_provider(read, n) for n in names) if p is not None)


def _session_secret(read: _Reader) -> Secret:
    secret = read.required("SESSION_SECRET")
    if secret and len(secret) < 32:
        read.problems.append(f"{ENV_PREFIX}SESSION_SECRET must be at least 32 characters")
    return Secret(secret)


def _session_cookie(read: _Reader) -> str:
    cookie = read.raw("SESSION_COOKIE") or "soundpost_session"
    if cookie == "session" or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", cookie):
        read.problems.append(
            f"{ENV_PREFIX}SESSION_COOKIE must be a plain token other than 'session', got {cookie!r}"
        )
    return cookie


def _bucket(read: _Reader) -> str:
    bucket = read.required("S3_BUCKET")
    if bucket and not BUCKET_NAME.match(bucket):
        read.problems.append(f"{ENV_PREFIX}S3_BUCKET {bucket!r} is not a valid bucket name")
    return bucket


def _secret(name: str) -> Callable[[_Reader], Secret | None]:
    """A secret with no format of its own: wrapped so that it never shows, or None when unset."""

    def load(read: _Reader) -> Secret | None:
        value = read.raw(name)
        return Secret(value) if value else None

    return load


def _trusted_origins(read: _Reader) -> tuple[str, ...]:
    return tuple(o.rstrip("/") for o in read.csv("TRUSTED_ORIGINS") or ())


def _allowed_types(read: _Reader) -> tuple[str, ...]:
    listed = read.csv("ALLOWED_TYPES")
    if listed is None:
        return DEFAULT_ALLOWED_TYPES
    types: list[str] = []
    for item in listed:
        canonical = canonical_type(item)
        if canonical is None:
            read.problems.append(
                f"{ENV_PREFIX}ALLOWED_TYPES: {item!r} is not a known audio type "
                f"(known: {', '.join(CANONICAL_TYPES)})"
            )
        elif canonical not in types:
            types.append(canonical)
    if not types:
        read.problems.append(f"{ENV_PREFIX}ALLOWED_TYPES must name at least one type")
    return tuple(types)


def _key_prefix(read: _Reader) -> str:
    prefix = read.raw("S3_KEY_PREFIX")
    if prefix is None:
        return "uploads/"
    prefix = prefix.strip("/")
    if not re.fullmatch(r"[A-Za-z0-9._\-/]{0,200}", prefix) or "//" in prefix or ".." in prefix:
        read.problems.append(f"{ENV_PREFIX}S3_KEY_PREFIX may hold only letters, digits, . _ - and single /")
    return f"{prefix}/" if prefix else ""


def _webhook_secret(read: _Reader) -> Secret | None:
    """A Standard Webhooks secret: ``whsec_`` then base64 of at least 24 random bytes."""
    value = read.raw("WEBHOOK_SECRET")
    if value is None:
        if read.raw("WEBHOOK_URL"):
            read.problems.append(
                f"{ENV_PREFIX}WEBHOOK_SECRET is required when {ENV_PREFIX}WEBHOOK_URL is set"
            )
        return None
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not value.startswith("whsec_") or len(key) < 24:
        read.problems.append(
            f"{ENV_PREFIX}WEBHOOK_SECRET must be whsec_ followed by base64 of at least 24 bytes"
        )
    return Secret(value)


# The in-memory limiter keeps up to this many hit times per user and rate.
MAX_RATE_AMOUNT = 1_000_000


def _rate_limit(read: _Reader, budget: Budget) -> str:
    """A budget's ``limits`` rate string such as ``60/minute`` or ``10/second;300/hour``."""
    value = read.raw(budget.setting) or budget.default
    try:
        rates = limits.parse_many(value)
    except ValueError:
        rates = []
    if not rates or not all(1 <= rate.amount <= MAX_RATE_AMOUNT for rate in rates):
        read.problems.append(
            f"{ENV_PREFIX}{budget.setting} must look like 60/minute or 10/second;300/hour "
            f"(each count from 1 to {MAX_RATE_AMOUNT}), got {value!r}"
        )
    return value


def _budget_rates(read: _Reader) -> Mapping[str, str]:
    """Budget name -> rate, one SOUNDPOST_<budget.setting> each (service.core.budgets declares them)."""
    return {budget.name: _rate_limit(read, budget) for budget in BUDGETS}


def _redis_url(read: _Reader) -> Secret | None:
    value = read.raw("REDIS_URL")
    if value is None:
        return None
    if urlsplit(value).scheme not in ("redis", "rediss", "redis+unix"):
        read.problems.append(f"{ENV_PREFIX}REDIS_URL must be a redis:// or rediss:// URL")
    return Secret(value)  # may carry a password


def _events_token(read: _Reader) -> Secret | None:
    """The shared secret S3 event pushes carry; unset turns the events route off."""
    value = read.raw("EVENTS_TOKEN")
    if value is None:
        if read.raw("EVENTS_URL"):
            read.problems.append(f"{ENV_PREFIX}EVENTS_URL needs {ENV_PREFIX}EVENTS_TOKEN")
        return None
    if not EVENTS_TOKEN.match(value):
        read.problems.append(
            f"{ENV_PREFIX}EVENTS_TOKEN must be 32 to 256 URL-safe characters (letters, digits, - _ . ~)"
        )
    return Secret(value)


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
    return lowered in ("true", "1", "yes")


def _upload_method(value: str) -> UploadMethod:
    for method in UPLOAD_METHODS:
        if value.lower() == method:
            return method
    raise ValueError(value)


def _part_bytes(read: _Reader) -> int:
    """The part size the page uploads in; below S3's 5 MiB only when a test says its S3 stand-in allows it."""
    small = read.raw("MULTIPART_SMALL_PARTS_FOR_TESTS")
    low = TEST_MIN_PART_BYTES if small and small.lower() in ("true", "1", "yes") else S3_MIN_PART_BYTES
    return read.integer("MULTIPART_PART_BYTES", S3_MIN_PART_BYTES, low, S3_MAX_PART_BYTES)


def _renditions(read: _Reader) -> Literal["off", "speech"]:
    """``speech`` adds a 16 kHz mono FLAC beside every upload; ``off`` none."""
    value = (read.raw("RENDITIONS") or "off").lower()
    if value not in ("off", "speech"):
        read.problems.append(f"{ENV_PREFIX}RENDITIONS must be 'speech' or 'off', got {value!r}")
        return "off"
    return "speech" if value == "speech" else "off"


# --- The settings table ------------------------------------------------------
# Each field of Settings below is one setting, declared once: its variable (after SOUNDPOST_),
# its default, its bounds, how it is read and one line saying what it is. load_settings reads
# every row; tests/test_compose.py holds .env.example and docs/configuration.md to the table.


@dataclass(frozen=True)
class Declared:
    """One row of the settings table: what ``load_settings`` reads and what the docs must show."""

    name: str  # the variable, after SOUNDPOST_
    default: object  # None: unset means off, none or required (see the doc)
    doc: str
    load: Callable[[_Reader], object]
    low: int | None = None
    high: int | None = None
    required: bool = False
    variables: tuple[Declared, ...] = ()  # a row that reads several variables lists them here

    def rows(self) -> tuple[Declared, ...]:
        """The variables this row reads: itself, or those it lists."""
        return self.variables or (self,)


DECLARED = "soundpost.setting"  # the key of a Settings field's metadata that holds its Declared row


def _row(declared: Declared) -> Any:
    """A Settings field carrying its row; typed Any so that it can stand for a field of any type."""
    return field(metadata={DECLARED: declared})


def integer(name: str, default: int | None, low: int, high: int, doc: str) -> Any:
    """A whole number from low to high; a default of None means off (None) while unset."""

    def load(read: _Reader) -> int | None:
        if default is None:
            return read.integer(name, low, low, high) if read.raw(name) else None
        return read.integer(name, default, low, high)

    return _row(Declared(name, default, doc, load, low, high))


def boolean(name: str, default: bool, doc: str) -> Any:
    """true/false (also 1/0, yes/no)."""
    return _row(
        Declared(name, default, doc, lambda read: read.parsed(name, default, _boolean, "true or false"))
    )


def text(name: str, default: str | None, doc: str) -> Any:
    """Any text, taken as it is (trimmed)."""
    return _row(Declared(name, default, doc, lambda read: read.raw(name) or default))


def url(name: str, doc: str, *, required: bool = False) -> Any:
    """An http(s) URL without query or fragment, its trailing / removed."""
    return _row(Declared(name, None, doc, lambda read: read.url(name, required=required), required=required))


def custom(
    name: str,
    default: object,
    doc: str,
    load: Callable[[_Reader], object],
    *,
    low: int | None = None,
    high: int | None = None,
    required: bool = False,
) -> Any:
    """A setting with its own reader (a format of its own, or a value wrapped as a Secret)."""
    return _row(Declared(name, default, doc, load, low, high, required))


@dataclass(frozen=True)
class Settings:
    """The validated configuration: one field per setting, each declared here once."""

    public_url: str = url(
        "PUBLIC_URL", "where browsers reach the app; https makes cookies Secure", required=True
    )
    trusted_origins: tuple[str, ...] = custom(
        "TRUSTED_ORIGINS", (), "extra origins allowed to send state-changing requests", _trusted_origins
    )
    session_secret: Secret = custom(
        "SESSION_SECRET",
        None,
        "signs the session cookie, 32 characters or more",
        _session_secret,
        required=True,
    )
    session_max_age: int = integer("SESSION_MAX_AGE", 12 * 3600, 60, 30 * 86400, "seconds a sign-in lasts")
    session_cookie: str = custom(
        "SESSION_COOKIE", "soundpost_session", "the session cookie's name", _session_cookie
    )
    providers: tuple[Provider, ...] = custom(
        "PROVIDERS",
        None,
        "identity providers offered, each read from PROVIDER_SETTINGS",
        _providers,
        required=True,
    )
    s3_bucket: str = custom("S3_BUCKET", None, "the bucket uploads land in", _bucket, required=True)
    s3_region: str = text("S3_REGION", "us-east-1", "the bucket's region")
    s3_endpoint: str | None = url("S3_ENDPOINT", "S3 endpoint the app talks to (unset: AWS)")
    s3_public_endpoint: str | None = url(
        "S3_PUBLIC_ENDPOINT", "S3 endpoint the browser posts to, if not the app's"
    )
    s3_access_key_id: str | None = text(
        "S3_ACCESS_KEY_ID", None, "access key (unset: the AWS credential chain)"
    )
    s3_secret_access_key: Secret | None = custom(
        "S3_SECRET_ACCESS_KEY",
        None,
        "secret key that goes with the access key",
        _secret("S3_SECRET_ACCESS_KEY"),
    )
    s3_session_token: Secret | None = custom(
        "S3_SESSION_TOKEN", None, "session token of temporary credentials", _secret("S3_SESSION_TOKEN")
    )
    s3_key_prefix: str = custom("S3_KEY_PREFIX", "uploads/", "prefix of every key", _key_prefix)
    s3_connect_timeout: int = integer(
        "S3_CONNECT_TIMEOUT", 3, 1, 60, "seconds to wait for a connection to S3"
    )
    s3_read_timeout: int = integer("S3_READ_TIMEOUT", 10, 1, 300, "seconds to wait for S3's answer")
    allowed_types: tuple[str, ...] = custom(
        "ALLOWED_TYPES", DEFAULT_ALLOWED_TYPES, "accepted audio types, aliases normalised", _allowed_types
    )
    max_upload_bytes: int = integer("MAX_UPLOAD_BYTES", 500 * MiB, 1, S3_MAX_POST_BYTES, "largest upload")
    presign_ttl: int = integer(
        "PRESIGN_TTL", 600, 30, MAX_PRESIGN_TTL, "seconds a presigned POST stays valid"
    )
    multipart_part_bytes: int = custom(
        "MULTIPART_PART_BYTES",
        S3_MIN_PART_BYTES,
        "bytes per part of the page's multipart uploads",
        _part_bytes,
        low=S3_MIN_PART_BYTES,
        high=S3_MAX_PART_BYTES,
    )
    multipart_small_parts_for_tests: bool = boolean(
        "MULTIPART_SMALL_PARTS_FOR_TESTS", False, "tests only: parts down to 1024 bytes"
    )
    user_quota_bytes: int | None = integer(
        "USER_QUOTA_BYTES", None, 1, 2**62, "bytes each user's verified uploads may take (unset: unlimited)"
    )
    max_pending_uploads: int = integer(
        "MAX_PENDING_UPLOADS", 50, 0, 10_000, "uploads a user may have waiting to be verified (0: no cap)"
    )
    staging_grace: int = integer(
        "STAGING_GRACE", 60, 0, 3600, "seconds staging waits before the sweeper promotes"
    )
    staging_lifetime: int = integer(
        "STAGING_LIFETIME", 86400, MAX_PRESIGN_TTL, 30 * 86400, "seconds before staging is deleted"
    )
    sweep_interval: int | None = integer(
        "SWEEP_INTERVAL", None, 1, 86400, "seconds between in-process sweeper passes (unset: off)"
    )
    webhook_url: str | None = url("WEBHOOK_URL", "receives one signed event per upload")
    webhook_secret: Secret | None = custom(
        "WEBHOOK_SECRET", None, "Standard Webhooks signing secret (required with the URL)", _webhook_secret
    )
    webhook_timeout: int = integer("WEBHOOK_TIMEOUT", 10, 1, 60, "seconds one delivery waits for a 2xx")
    events_token: Secret | None = custom(
        "EVENTS_TOKEN", None, "shared secret of S3 event pushes (unset: events off)", _events_token
    )
    events_url: str | None = url("EVENTS_URL", "where the store posts events (default: the public URL's)")
    budget_rates: Mapping[str, str] = _row(
        Declared(
            "*_RATE_LIMIT",
            None,
            "budget name -> rate, one variable per budget of service.core.budgets",
            _budget_rates,
            variables=tuple(Declared(b.setting, b.default, b.counts, _budget_rates) for b in BUDGETS),
        )
    )
    redis_url: Secret | None = custom(
        "REDIS_URL", None, "Redis shared by replicas (unset: memory)", _redis_url
    )
    idp_metadata_ttl: int = integer(
        "IDP_METADATA_TTL", 3600, 0, 7 * 86400, "seconds discovery metadata is cached"
    )
    sign_in_timeout: int = integer("SIGN_IN_TIMEOUT", 600, 30, 3600, "seconds a sign-in may take")
    access_log: bool = boolean("ACCESS_LOG", False, "log one JSON line per request")
    redis_lease_percent: int = integer(
        "REDIS_LEASE_PERCENT",
        10,
        0,
        50,
        "percent of a budget a replica may lease from Redis ahead of use (0: every hit asks Redis)",
    )
    reservation_ttl: int | None = integer(
        "RESERVATION_TTL",
        None,
        10,
        31 * 86400,
        "seconds a presign's reservation is held unconfirmed (unset: PRESIGN_TTL + STAGING_LIFETIME)",
    )
    max_duration_seconds: int = integer(
        "MAX_DURATION_SECONDS", 4 * 3600, 1, 7 * 86400, "longest audio accepted, counted from decoded samples"
    )
    renditions: Literal["off", "speech"] = custom(
        "RENDITIONS", "off", "speech: also keep a 16 kHz mono FLAC for transcription; off: none", _renditions
    )
    user_quota_seconds: int | None = integer(
        "USER_QUOTA_SECONDS",
        None,
        1,
        2**40,
        "seconds of audio each user's library may hold (unset: unlimited)",
    )
    decode_cpu_seconds: int = integer(
        "DECODE_CPU_SECONDS", 120, 1, 3600, "CPU seconds one decoding job may use"
    )
    decode_memory_mib: int = integer(
        "DECODE_MEMORY_MIB", 512, 256, 64 * 1024, "address space of one decoding worker in MiB"
    )
    decode_timeout: int = integer("DECODE_TIMEOUT", 300, 5, 3600, "seconds one decoding job may take")
    upload_method: UploadMethod = custom(
        "UPLOAD_METHOD",
        "auto",
        "post, put, or auto: POST where the store accepts POST policies, PUT otherwise",
        lambda read: read.parsed("UPLOAD_METHOD", "auto", _upload_method, "auto, post or put"),
    )
    # A new setting goes here, in its own block: see docs/development.md, "Where things go".

    @property
    def reservation_seconds(self) -> int:
        """How long a presign holds its bytes and pending slot unconfirmed."""
        return self.reservation_ttl or self.presign_ttl + self.staging_lifetime

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure unless the service is reached over plain http."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def root_path(self) -> str:
        """Path prefix the service is mounted under behind a proxy ("" at the root)."""
        return urlsplit(self.public_url).path.rstrip("/")

    @property
    def home(self) -> str:
        """The page's path on this origin: where sign-in lands and sign-out returns."""
        return self.root_path + "/"

    @property
    def browser_s3_endpoint(self) -> str | None:
        return self.s3_public_endpoint or self.s3_endpoint

    def budget_rate(self, budget: Budget) -> str:
        """The rate a budget runs at: its setting if set, else its default."""
        return self.budget_rates.get(budget.name, budget.default)

    @property
    def events_push_url(self) -> str | None:
        """Where the store posts S3 events, token included, or None when the events route is off."""
        if self.events_token is None:
            return None
        base = self.events_url or f"{self.public_url}{EVENTS_PATH}"
        return f"{base}?token={self.events_token}"

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)


def _undeclared() -> list[str]:
    return [f.name for f in fields(Settings) if DECLARED not in f.metadata]


if _undeclared():  # a field added the old way (a bare default) would never be read: refuse at import
    raise TypeError(f"Settings fields without a row in the settings table: {', '.join(_undeclared())}")


def declared_settings() -> list[Declared]:
    """Every SOUNDPOST_* variable the table reads (providers' own aside): what the docs must list."""
    return [row for f in fields(Settings) for row in f.metadata[DECLARED].rows()]


def _check_together(read: _Reader, settings: Settings) -> None:
    """The rules that tie one setting to another."""
    if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
        read.problems.append(
            f"{ENV_PREFIX}S3_ACCESS_KEY_ID and {ENV_PREFIX}S3_SECRET_ACCESS_KEY go together: "
            "set both, or neither to use the default AWS credential chain"
        )
    if settings.s3_session_token and not settings.s3_access_key_id:
        read.problems.append(
            f"{ENV_PREFIX}S3_SESSION_TOKEN needs {ENV_PREFIX}S3_ACCESS_KEY_ID and {ENV_PREFIX}S3_SECRET_ACCESS_KEY "
            "(the default credential chain brings its own token)"
        )
    part, largest = settings.multipart_part_bytes, settings.max_upload_bytes
    low = TEST_MIN_PART_BYTES if settings.multipart_small_parts_for_tests else S3_MIN_PART_BYTES
    if part >= low and -(-largest // part) > S3_MAX_PARTS:
        read.problems.append(
            f"{ENV_PREFIX}MULTIPART_PART_BYTES {part} splits {ENV_PREFIX}MAX_UPLOAD_BYTES into more than "
            f"{S3_MAX_PARTS} parts (S3's limit): raise it to at least {-(-largest // S3_MAX_PARTS)}"
        )


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build the settings from a mapping of environment variables, or fail naming each problem."""
    read = _Reader(env)
    values: dict[str, Any] = {f.name: f.metadata[DECLARED].load(read) for f in fields(Settings)}
    settings = Settings(**values)
    _check_together(read, settings)
    if read.problems:
        raise SettingsError(read.problems)
    return settings
