"""S3 bucket notifications: the store tells us an upload landed, and we promote it at once.

radosgw (through its SNS-compatible topics) and MinIO (its webhook target) POST
the S3 event ``Records`` JSON here. The route trusts nothing in it but the key:
each key is decoded and, if it is a staging key of this service, handed to the
same idempotent promotion the confirm route and the sweeper run. Everything else
(other buckets, other event names, library or foreign keys) is ignored and counted.

A push is authenticated by ``SOUNDPOST_EVENTS_TOKEN``, sent as ``Authorization:
Bearer <token>`` or, for stores whose push endpoints cannot send headers, as
``?token=<token>``; it is compared in constant time before the body is read.
The answer is a 2xx only once every record is promoted or decided, so a store
that retries failed pushes (MinIO's queue; radosgw's persistent topics, which on
16.2 resume only after a restart) brings back what a storage outage interrupted;
a store error answers 503 for that reason. The sweeper catches what no push brings.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated
from urllib.parse import unquote_plus

import msgspec
from msgspec import Meta
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from service.core import keys
from service.errors import ApiError
from service.http.api import Spec
from service.http.handlers import storage_unavailable
from service.http.params import read_json_body
from service.lifecycle.promotion import Promotion, promote_staged
from service.resources import Resources, resources
from service.schemas import json_response
from service.settings import Settings
from service.storage.errors import StorageError

logger = logging.getLogger("soundpost.events")

# One record per push is what radosgw and MinIO send; a few more leave room, and bound the time a push costs.
MAX_RECORDS = 10
MAX_BODY = 64 * 1024
# An S3 key is at most 1024 bytes; URL-encoded, each byte may take three characters.
EncodedKey = Annotated[str, Meta(min_length=1, max_length=3 * 1024)]

EVENTS = Counter("soundpost_s3_events", "S3 event records received, by what became of them", ["outcome"])


class S3Object(msgspec.Struct):
    key: EncodedKey


class S3Bucket(msgspec.Struct):
    name: Annotated[str, Meta(max_length=255)]


class S3Entity(msgspec.Struct):
    bucket: S3Bucket
    object: S3Object


class EventRecord(msgspec.Struct, rename="camel"):
    """One S3 event record; the fields a store adds beyond these are not read."""

    event_name: Annotated[str, Meta(max_length=255)]
    s3: S3Entity


class EventBatch(msgspec.Struct, rename={"records": "Records"}):
    """The body radosgw and MinIO push: ``{"Records": [...]}``."""

    records: Annotated[list[EventRecord], Meta(max_length=MAX_RECORDS)]


class EventsReceipt(msgspec.Struct):
    """How many records were promoted (now or before), refused, or not ours to act on."""

    promoted: int = 0
    rejected: int = 0
    ignored: int = 0


_decode_batch = msgspec.json.Decoder(EventBatch).decode

RECEIVE = Spec(
    "Receive S3 event records (radosgw or MinIO bucket notifications) and promote the staging uploads they name.",
    response=EventsReceipt,
    errors={
        400: ("malformed_json", "malformed_event"),
        401: ("events_token_missing",),
        403: ("events_token_invalid",),
        404: ("events_disabled",),
        413: ("body_too_large",),
        415: ("unsupported_media_type",),
        503: ("storage_unavailable", "promotion_in_progress"),
    },
    tag="events",
)


def presented_token(request: Request) -> str | None:
    """The bearer token, else the ``token`` query parameter, else None."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query_params.get("token") or None


def authenticate(request: Request, settings: Settings) -> None:
    """Refuse a push that does not carry the configured token (compared in constant time)."""
    if settings.events_token is None:
        raise ApiError(
            404, "events_disabled", "S3 events are not received here: SOUNDPOST_EVENTS_TOKEN is not set."
        )
    token = presented_token(request)
    if token is None:
        raise ApiError(
            401,
            "events_token_missing",
            "Send the events token as Authorization: Bearer <token> or ?token=<token>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode(), str(settings.events_token).encode()):
        raise ApiError(403, "events_token_invalid", "The events token is not the configured one.")


def decode_batch(body: bytes) -> EventBatch:
    """The body as S3 event records, or a 400 saying what is wrong with it."""
    try:
        return _decode_batch(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "malformed_event", f"Not S3 event records: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from None


def staging_key(settings: Settings, record: EventRecord) -> str | None:
    """The staging key a record names, if it is an object created in our bucket under our staging area.

    S3 URL-encodes keys in events (spaces as ``+``); radosgw sends them as they
    are. Both decode the same way here, because the keys this service builds
    hold neither ``%`` nor ``+`` (``keys.safe_filename``).
    """
    if record.s3.bucket.name != settings.s3_bucket:
        return None
    if not record.event_name.removeprefix("s3:").startswith("ObjectCreated:"):
        return None
    key = unquote_plus(record.s3.object.key)
    return key if keys.parse_key(settings.s3_key_prefix, key) is not None else None


async def settle(state: Resources, key: str) -> Promotion:
    """Promote one staging key; a store failure becomes the 503 that makes the store push again."""
    try:
        promotion = await promote_staged(state, key)
    except StorageError as exc:
        logger.error(
            "S3 event for %s not settled: the store failed during promotion (%s); "
            "check SOUNDPOST_S3_ENDPOINT and the bucket's health, the store will push again",
            key,
            exc.advice,
        )
        raise storage_unavailable() from None
    if promotion.outcome == "pending":
        raise ApiError(
            503,
            "promotion_in_progress",
            "Another replica is promoting this upload; push again shortly.",
            headers={"Retry-After": "2"},
        )
    return promotion


async def receive(request: Request) -> Response:
    """``POST /api/events/s3``: the token first, then the body, then each record settled in turn."""
    state = resources(request)
    settings = state["settings"]
    authenticate(request, settings)
    batch = decode_batch(await read_json_body(request, MAX_BODY))
    receipt = EventsReceipt()
    for record in batch.records:
        key = staging_key(settings, record)
        if key is None:
            receipt.ignored += 1
            EVENTS.labels("ignored").inc()
            continue
        outcome = (await settle(state, key)).outcome
        if outcome == "promoted":
            receipt.promoted += 1
        elif outcome in ("rejected", "replaced"):
            receipt.rejected += 1
        else:  # missing (deleted, or already promoted and cleaned up) or ignored by promotion itself
            receipt.ignored += 1
        EVENTS.labels(outcome).inc()
    return json_response(receipt)
