"""Settings: read from the environment once, validated once, frozen.

Every setting is a ``SOUNDPOST_*`` variable. ``load_settings`` collects every
problem before failing, so an operator fixes a broken deployment in one pass
instead of one restart per typo. Secrets are wrapped in ``Secret`` so they never
show in a repr, a traceback or a log line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
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


@dataclass(frozen=True)
class Settings:
    public_url: str
    session_secret: Secret
    providers: tuple[Provider, ...]
    s3_bucket: str
    session_max_age: int = 12 * 3600
    session_cookie: str = "soundpost_session"
    s3_endpoint: str | None = None
    s3_public_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: Secret | None = None
    s3_session_token: Secret | None = None
    s3_key_prefix: str = "uploads/"
    allowed_types: tuple[str, ...] = DEFAULT_ALLOWED_TYPES
    max_upload_bytes: int = 500 * MiB
    presign_ttl: int = 600
    trusted_origins: tuple[str, ...] = field(default=())
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    webhook_timeout: int = 10
    budget_rates: Mapping[str, str] = field(default_factory=dict)  # budget name -> rate; else its default
    redis_url: Secret | None = None
    idp_metadata_ttl: int = 3600
    sign_in_timeout: int = 600
    access_log: bool = False
    s3_connect_timeout: int = 3
    s3_read_timeout: int = 10
    multipart_part_bytes: int = S3_MIN_PART_BYTES
    multipart_small_parts_for_tests: bool = False
    staging_grace: int = 60
    staging_lifetime: int = 86400
    sweep_interval: int | None = None
    user_quota_bytes: int | None = None
    max_pending_uploads: int = 50
    events_token: Secret | None = None
    events_url: str | None = None
    # --- stores without POST uploads (issue 22) ---
    upload_method: UploadMethod = "auto"

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


def _webhook_secret(read: _Reader, url: str | None) -> Secret | None:
    """A Standard Webhooks secret: ``whsec_`` then base64 of at least 24 random bytes."""
    value = read.raw("WEBHOOK_SECRET")
    if value is None:
        if url:
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


def _part_bytes(read: _Reader, max_upload_bytes: int) -> tuple[int, bool]:
    """The part size the page uploads in; below S3's 5 MiB only when a test says its S3 stand-in allows it."""
    small = read.parsed("MULTIPART_SMALL_PARTS_FOR_TESTS", False, _boolean, "true or false")
    low = TEST_MIN_PART_BYTES if small else S3_MIN_PART_BYTES
    part = read.integer("MULTIPART_PART_BYTES", S3_MIN_PART_BYTES, low, S3_MAX_PART_BYTES)
    if part >= low and -(-max_upload_bytes // part) > S3_MAX_PARTS:
        read.problems.append(
            f"{ENV_PREFIX}MULTIPART_PART_BYTES {part} splits {ENV_PREFIX}MAX_UPLOAD_BYTES into more than "
            f"{S3_MAX_PARTS} parts (S3's limit): raise it to at least {-(-max_upload_bytes // S3_MAX_PARTS)}"
        )
    return part, small


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build the settings from a mapping of environment variables, or fail naming each problem."""
    read = _Reader(env)
    public_url = read.url("PUBLIC_URL", required=True) or ""
    secret = read.required("SESSION_SECRET")
    if secret and len(secret) < 32:
        read.problems.append(f"{ENV_PREFIX}SESSION_SECRET must be at least 32 characters")

    names = read.csv("PROVIDERS") or ()
    if not names:
        read.problems.append(f"{ENV_PREFIX}PROVIDERS must name at least one identity provider")
    if len(set(names)) != len(names):
        read.problems.append(f"{ENV_PREFIX}PROVIDERS names a provider twice")
    providers = tuple(p for p in (_provider(read, n) for n in names) if p is not None)

    bucket = read.required("S3_BUCKET")
    if bucket and not BUCKET_NAME.match(bucket):
        read.problems.append(f"{ENV_PREFIX}S3_BUCKET {bucket!r} is not a valid bucket name")
    access_key = read.raw("S3_ACCESS_KEY_ID")
    secret_key = read.raw("S3_SECRET_ACCESS_KEY")
    if bool(access_key) != bool(secret_key):
        read.problems.append(
            f"{ENV_PREFIX}S3_ACCESS_KEY_ID and {ENV_PREFIX}S3_SECRET_ACCESS_KEY go together: "
            "set both, or neither to use the default AWS credential chain"
        )
    session_token = read.raw("S3_SESSION_TOKEN")
    if session_token and not access_key:
        read.problems.append(
            f"{ENV_PREFIX}S3_SESSION_TOKEN needs {ENV_PREFIX}S3_ACCESS_KEY_ID and {ENV_PREFIX}S3_SECRET_ACCESS_KEY "
            "(the default credential chain brings its own token)"
        )
    cookie = read.raw("SESSION_COOKIE") or "soundpost_session"
    webhook_url = read.url("WEBHOOK_URL")
    if cookie == "session" or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", cookie):
        read.problems.append(
            f"{ENV_PREFIX}SESSION_COOKIE must be a plain token other than 'session', got {cookie!r}"
        )

    max_upload_bytes = read.integer("MAX_UPLOAD_BYTES", 500 * MiB, 1, S3_MAX_POST_BYTES)
    part_bytes, small_parts = _part_bytes(read, max_upload_bytes)
    settings = Settings(
        public_url=public_url,
        session_secret=Secret(secret),
        session_max_age=read.integer("SESSION_MAX_AGE", 12 * 3600, 60, 30 * 86400),
        session_cookie=cookie,
        providers=providers,
        s3_endpoint=read.url("S3_ENDPOINT"),
        s3_public_endpoint=read.url("S3_PUBLIC_ENDPOINT"),
        s3_region=read.raw("S3_REGION") or "us-east-1",
        s3_bucket=bucket,
        s3_access_key_id=access_key,
        s3_secret_access_key=Secret(secret_key) if secret_key else None,
        s3_session_token=Secret(session_token) if session_token else None,
        s3_key_prefix=_key_prefix(read),
        allowed_types=_allowed_types(read),
        max_upload_bytes=max_upload_bytes,
        presign_ttl=read.integer("PRESIGN_TTL", 600, 30, MAX_PRESIGN_TTL),
        trusted_origins=tuple(o.rstrip("/") for o in read.csv("TRUSTED_ORIGINS") or ()),
        webhook_url=webhook_url,
        webhook_secret=_webhook_secret(read, webhook_url),
        webhook_timeout=read.integer("WEBHOOK_TIMEOUT", 10, 1, 60),
        budget_rates={budget.name: _rate_limit(read, budget) for budget in BUDGETS},
        redis_url=_redis_url(read),
        idp_metadata_ttl=read.integer("IDP_METADATA_TTL", 3600, 0, 7 * 86400),
        sign_in_timeout=read.integer("SIGN_IN_TIMEOUT", 600, 30, 3600),
        access_log=read.parsed("ACCESS_LOG", False, _boolean, "true or false"),
        s3_connect_timeout=read.integer("S3_CONNECT_TIMEOUT", 3, 1, 60),
        s3_read_timeout=read.integer("S3_READ_TIMEOUT", 10, 1, 300),
        multipart_part_bytes=part_bytes,
        multipart_small_parts_for_tests=small_parts,
        events_token=_events_token(read),
        events_url=read.url("EVENTS_URL"),
        staging_grace=read.integer("STAGING_GRACE", 60, 0, 3600),
        staging_lifetime=read.integer("STAGING_LIFETIME", 86400, MAX_PRESIGN_TTL, 30 * 86400),
        sweep_interval=read.integer("SWEEP_INTERVAL", 1, 1, 86400) if read.raw("SWEEP_INTERVAL") else None,
        user_quota_bytes=read.integer("USER_QUOTA_BYTES", 1, 1, 2**62)
        if read.raw("USER_QUOTA_BYTES")
        else None,
        max_pending_uploads=read.integer("MAX_PENDING_UPLOADS", 50, 1, 10_000),
        # --- stores without POST uploads (issue 22) ---
        upload_method=read.parsed("UPLOAD_METHOD", "auto", _upload_method, "auto, post or put"),
    )
    if read.problems:
        raise SettingsError(read.problems)
    return settings
