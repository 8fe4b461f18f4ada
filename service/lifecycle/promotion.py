"""Promotion: verify a staging object and copy it into the library, once, whoever asks.

Three ways in run these same steps: the confirm route (``promote_upload``), the S3
events route (``promote_staged``) and the sweeper (``service.lifecycle.sweeper``). Each
step is idempotent and every choice between replicas is made by a conditional
write in the bucket, so concurrent or repeated runs converge on one library
object and one announcement per upload id:

1. An upload id is *decided* once: by whoever creates ``{prefix}outbox/{id}.json``
   with ``If-None-Match: *`` after verifying the staging object. The record holds
   the outcome (confirmed or rejected), the announcement's body, the verified
   ETag and a lease.
2. Confirmed: a server-side copy of exactly the verified version to the library
   key, with the canonical Content-Type and the facts learnt as metadata. Rejected:
   nothing is copied. Either way the staging object is then deleted.
3. The lease holder delivers the announcement (``msg_{id}``); once the receiver
   acknowledged, the record moves to ``{prefix}decided/{id}.json`` and the outbox
   entry is deleted. A failed delivery releases the lease, and the sweeper takes
   over stale leases with ``If-Match`` and delivers later.
4. A staging object whose id is already decided is a replacement (POST policies
   are reusable until they expire) or a duplicate: it is deleted, and the library
   is never overwritten.

Verification reads at most ``sniff.HEAD_BYTES`` and parses them in a small thread
pool, with a time budget, so a crafted header never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from service.core import audio_types as audio
from service.core import keys, sniff
from service.errors import ApiError
from service.lifecycle.integrity import integrity_refusal
from service.observability import UPLOADS_CONFIRMED
from service.resources import Resources
from service.schemas import (
    RejectionEvent,
    RejectionMessage,
    Upload,
    UploadEvent,
    WebhookMessage,
    encoder,
)
from service.storage.client import ObjectFacts, Storage
from service.storage.errors import NotFound, PreconditionFailed

logger = logging.getLogger("soundpost.promotion")

Outcome = Literal["promoted", "rejected", "replaced", "missing", "ignored", "pending"]

# Parsing one header takes milliseconds; a crafted one is cut off here and its duration is unknown.
VERIFY_SECONDS = 2.0
# Two threads: promotions queue behind them instead of taking the GIL from the event loop all at once.
_VERIFIERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="soundpost-verify")
# A promoter that claimed an upload but went quiet this long is presumed gone; others take over.
LEASE_MARGIN_SECONDS = 30
# A pessimistic server-side copy rate: a 5 GiB upload's lease covers its copy (about four minutes).
COPY_BYTES_PER_SECOND = 20 * 1024 * 1024
# Claims lost to another replica before this run gives up and reports "pending".
MAX_ROUNDS = 4
# How long confirm waits for another replica's promotion of the same upload to finish.
SETTLE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
DURATION_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Promotion:
    """What one promotion attempt found or did.

    - ``promoted``: the upload is in the library (``upload`` describes it), now or before.
    - ``rejected``: the upload failed its checks and was deleted (``error`` says why).
    - ``replaced``: the staging object reused an id that was already decided; it was deleted.
      ``upload`` or ``error`` is that earlier decision.
    - ``missing``: nothing under that id (never uploaded, deleted, or not the caller's).
    - ``pending``: another replica is promoting it right now; ask again shortly.
    - ``ignored``: not a staging key of this service.
    """

    outcome: Outcome
    upload: Upload | None = None
    error: ApiError | None = None
    announced: bool = False


class Refusal(msgspec.Struct):
    status: int
    code: str
    detail: str

    def error(self) -> ApiError:
        return ApiError(self.status, self.code, self.detail)


class Decision(msgspec.Struct):
    """The outbox (and later decided) record of one upload id."""

    upload_id: str
    owner: str
    staging_key: str
    source_etag: str
    message: str  # the announcement's JSON body, as delivered
    lease_until: float
    upload: Upload | None = None  # the library upload, when confirmed
    refusal: Refusal | None = None  # why it was deleted, when rejected
    attempts: int = 0

    @property
    def confirmed(self) -> bool:
        return self.upload is not None


_decision_decoder = msgspec.json.Decoder(Decision)

# Library objects never change once written, so what promotion learnt about one stays true.
_durations: OrderedDict[str, float | None] = OrderedDict()


def remember_duration(key: str, duration: float | None) -> None:
    _durations[key] = duration
    _durations.move_to_end(key)
    while len(_durations) > DURATION_CACHE_SIZE:
        _durations.popitem(last=False)


def known_duration(key: str) -> float | None:
    """The duration promotion learnt for a library key, if this process saw it."""
    return _durations.get(key)


def deleted_record(owner: str, upload_id: str, key: str) -> Decision:
    """What DELETE leaves behind: the id is spent, and a reused POST policy cannot bring it back."""
    gone = Refusal(404, "not_found", "There is no such upload.")
    # A live lease: a promoter that meets this record in the outbox takes it as final, not as stalled.
    lease = time.time() + LEASE_MARGIN_SECONDS
    return Decision(upload_id, owner, key, source_etag="", message="", lease_until=lease, refusal=gone)


def lease_seconds(resources: Resources, size: int) -> float:
    """Long enough to copy ``size`` bytes and deliver once, so a live holder is never taken over."""
    return resources["settings"].webhook_timeout + LEASE_MARGIN_SECONDS + size / COPY_BYTES_PER_SECOND


# --- verification ---------------------------------------------------------------------------


def _inspect(head: bytes, canonical: str, whole: bool) -> tuple[bool, float | None]:
    """Runs in the verify pool: signature check and duration from the first bytes."""
    if not sniff.matches_type(head, canonical):
        return False, None
    return True, sniff.duration_seconds(head, whole=whole)


async def inspect_off_loop(head: bytes, canonical: str, whole: bool) -> tuple[bool, float | None]:
    """(bytes match the type, duration) computed off the event loop within VERIFY_SECONDS.

    Past the budget the signature (twelve bytes, checked here) decides and the
    duration is unknown; the worker thread finishes its bounded parse on its own.
    """
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(_VERIFIERS, _inspect, head, canonical, whole)
    try:
        return await asyncio.wait_for(work, VERIFY_SECONDS)
    except TimeoutError:
        logger.warning("audio header parse cut at its %ss budget", VERIFY_SECONDS)
        return sniff.matches_type(head, canonical), None


def library_type(declared: str, filename: str) -> str | None:
    """The canonical type to store: the declared one, or the one the extension names where they overlap.

    Ogg and Opus share extensions; the library follows the extension so a
    listing can state the type from the key alone.
    """
    canonical = audio.canonical_type(declared)
    if canonical is None:
        return None
    named = audio.type_for_extension(keys.split_extension(filename)[1])
    return (
        named
        if named is not None and audio.extension_agrees(keys.split_extension(filename)[1], canonical)
        else canonical
    )


async def library_usage(storage: Storage, prefix: str, owner: str) -> int:
    """Bytes a user's library holds now: one LIST per thousand uploads."""
    total = 0
    after: str | None = None
    area = keys.user_prefix(prefix, owner, keys.LIBRARY)
    while True:
        page = await storage.list_objects(area, 1000, after)
        total += sum(o.size for o in page.objects)
        if page.next_start_after is None:
            return total
        after = page.next_start_after


async def _verify(
    resources: Resources, owner: str, facts: ObjectFacts, filename: str
) -> tuple[str, float | None] | Refusal:
    """(canonical type, duration) when the staging object may enter the library, else why not."""
    settings, storage = resources["settings"], resources["storage"]
    if facts.size > settings.max_upload_bytes:
        return Refusal(
            413,
            "file_too_large",
            f"Files may be at most {settings.max_upload_bytes} bytes; the upload was removed.",
        )
    canonical = library_type(facts.content_type, filename)
    if canonical is None or audio.canonical_type(facts.content_type) not in settings.allowed_types:
        return Refusal(
            422,
            "unsupported_type",
            f"{facts.content_type!r} is not an accepted audio type; the upload was removed.",
        )
    if facts.size == 0:
        return Refusal(422, "not_audio", "The file is empty; the upload was removed.")
    if settings.user_quota_bytes is not None:
        used = await library_usage(storage, settings.s3_key_prefix, owner)
        resources["usage"].recounted(owner, used)
        if used + facts.size > settings.user_quota_bytes:
            return Refusal(
                413,
                "quota_exceeded",
                f"This upload would take your storage past {settings.user_quota_bytes} bytes; it was removed.",
            )
    mismatch = await integrity_refusal(storage, facts)
    if mismatch is not None:
        return Refusal(422, mismatch.code, mismatch.detail)
    head = await storage.read_head(facts.key, min(facts.size, sniff.HEAD_BYTES))
    matches, duration = await inspect_off_loop(head, canonical, whole=len(head) >= facts.size)
    if not matches:
        return Refusal(422, "not_audio", f"The file's contents are not {canonical}; the upload was removed.")
    return canonical, duration


# --- records --------------------------------------------------------------------------------


async def _read(storage: Storage, key: str) -> tuple[Decision, str] | None:
    try:
        record = await storage.get_record(key)
    except NotFound:
        return None
    return _decision_decoder.decode(record.body), record.etag


async def read_decision(resources: Resources, upload_id: str) -> tuple[Decision, str | None] | None:
    """(record, outbox ETag) while the announcement is pending, (record, None) once decided, else None."""
    storage, prefix = resources["storage"], resources["settings"].s3_key_prefix
    pending = await _read(storage, keys.outbox_key(prefix, upload_id))
    if pending is not None:
        return pending
    done = await _read(storage, keys.decided_key(prefix, upload_id))
    return (done[0], None) if done is not None else None


def _message(
    resources: Resources,
    owner: str,
    facts: ObjectFacts,
    verdict: tuple[str, float | None] | Refusal,
    target: str,
) -> tuple[str, Upload | None, Refusal | None]:
    """The announcement's body, and the upload or the refusal it announces."""
    settings = resources["settings"]
    upload_id = keys.parse_key(settings.s3_key_prefix, facts.key)
    assert upload_id is not None
    now = datetime.now(UTC)
    if isinstance(verdict, Refusal):
        event = RejectionEvent(
            id=upload_id[1],
            key=facts.key,
            bucket=settings.s3_bucket,
            user=owner,
            size=facts.size,
            content_type=facts.content_type,
            code=verdict.code,
            detail=verdict.detail,
        )
        return encoder.encode(RejectionMessage("upload.rejected", now, event)).decode(), None, verdict
    canonical, duration = verdict
    upload = Upload(
        id=upload_id[1],
        key=target,
        filename=upload_id[2],
        size=facts.size,
        content_type=canonical,
        uploaded_at=now.replace(microsecond=0),
        duration_seconds=duration,
    )
    data = UploadEvent(
        id=upload.id,
        key=target,
        bucket=settings.s3_bucket,
        user=owner,
        size=upload.size,
        content_type=canonical,
        duration_seconds=duration,
    )
    return encoder.encode(WebhookMessage("upload.confirmed", now, data)).decode(), upload, None


# --- the steps ------------------------------------------------------------------------------


async def _copy(resources: Resources, decision: Decision) -> bool:
    """Copy the verified version into the library; False when the staging object is not that version any more."""
    storage, upload = resources["storage"], decision.upload
    assert upload is not None
    metadata = {
        "upload-id": decision.upload_id,
        "original-size": str(upload.size),
        "source-etag": decision.source_etag.strip('"'),
        "duration-seconds": "" if upload.duration_seconds is None else repr(upload.duration_seconds),
    }
    try:
        copied = await storage.copy_verified(
            decision.staging_key, decision.source_etag, upload.key, upload.content_type, metadata
        )
    except (PreconditionFailed, NotFound):
        return False
    # Stores that ignore CopySourceIfMatch (radosgw 16.2, moto 5.2.5) copy whatever is there now: a
    # single-part object's ETag is its MD5, so a different ETag means a re-POST slipped in. Multipart
    # staging objects cannot be replaced (no route signs a second upload to their key).
    if "-" not in decision.source_etag and copied.strip('"') != decision.source_etag.strip('"'):
        logger.warning("upload %s changed between verification and copy; verifying again", decision.upload_id)
        await storage.delete(upload.key)
        return False
    remember_duration(upload.key, upload.duration_seconds)
    return True


async def _in_library(storage: Storage, upload: Upload) -> bool:
    try:
        await storage.facts(upload.key)
    except NotFound:
        return False
    return True


async def _deliver(resources: Resources, decision: Decision, etag: str) -> bool:
    """Announce as lease holder; on acknowledgement the record is final, otherwise the lease is released."""
    storage, settings = resources["storage"], resources["settings"]
    prefix, sender = settings.s3_key_prefix, resources["webhooks"]
    outbox = keys.outbox_key(prefix, decision.upload_id)
    if not decision.message:
        sender = None  # a deletion: nothing to announce
    if sender is not None and not await sender.deliver(f"msg_{decision.upload_id}", decision.message):
        released = msgspec.structs.replace(decision, lease_until=0.0)
        with contextlib.suppress(PreconditionFailed):  # someone took the lease over: theirs to deliver
            await storage.put_record(outbox, encoder.encode(released), if_match=etag)
        logger.warning("upload %s not announced yet; the sweeper will deliver it", decision.upload_id)
        return False
    with contextlib.suppress(PreconditionFailed):  # created once: a DELETE's record keeps the last word
        await storage.put_record(keys.decided_key(prefix, decision.upload_id), encoder.encode(decision))
    await storage.delete(outbox)
    return sender is not None


async def take_over(resources: Resources, decision: Decision, etag: str) -> tuple[Decision, str] | None:
    """Take a stale lease with If-Match; None when it is fresh or another replica took it first."""
    if decision.lease_until > time.time():
        return None
    mine = msgspec.structs.replace(
        decision,
        lease_until=time.time() + lease_seconds(resources, decision.upload.size if decision.upload else 0),
        attempts=decision.attempts + 1,
    )
    outbox = keys.outbox_key(resources["settings"].s3_key_prefix, decision.upload_id)
    try:
        return mine, await resources["storage"].put_record(outbox, encoder.encode(mine), if_match=etag)
    except (PreconditionFailed, NotFound):
        return None


async def finish(resources: Resources, decision: Decision, etag: str, deliver: bool = True) -> Promotion:
    """As lease holder: copy if not yet in the library, delete staging, announce."""
    storage = resources["storage"]
    copy_needed = decision.upload is not None and not await _in_library(storage, decision.upload)
    if copy_needed and not await _copy(resources, decision):
        # The verified version is gone (deleted or replaced): the decision is void, start again.
        await storage.delete(keys.outbox_key(resources["settings"].s3_key_prefix, decision.upload_id))
        return Promotion("missing")
    await storage.delete(decision.staging_key)
    resources["usage"].settled(decision.owner)
    if decision.upload is not None:
        UPLOADS_CONFIRMED.inc()
        resources["usage"].promoted(decision.owner, decision.upload.size)
    announced = await _deliver(resources, decision, etag) if deliver else False
    return _answer(decision, announced)


def _answer(decision: Decision, announced: bool = False, outcome: Outcome | None = None) -> Promotion:
    if decision.upload is not None:
        return Promotion(outcome or "promoted", upload=decision.upload, announced=announced)
    assert decision.refusal is not None
    return Promotion(outcome or "rejected", error=decision.refusal.error(), announced=announced)


async def _settle(
    resources: Resources, decision: Decision, etag: str | None, key: str | None, deliver: bool
) -> Promotion | None:
    """An id already decided: clear a replacement, help a stalled promoter; None to look again."""
    storage = resources["storage"]
    if etag is not None and decision.lease_until <= time.time():
        taken = await take_over(resources, decision, etag)
        if taken is None:
            return None  # another replica took it first: look again
        result = await finish(resources, *taken, deliver=deliver)
        return None if result.outcome == "missing" else result
    settled = etag is None or decision.refusal is not None
    if not settled and decision.upload is not None:
        settled = await _in_library(storage, decision.upload)
    if not settled:
        return Promotion("pending")  # the holder is between claim and copy
    replaced = False
    if key is not None:
        try:
            facts = await storage.facts(key)
            replaced = facts.etag != decision.source_etag
        except NotFound:
            pass
        await storage.delete(key)
    return _answer(decision, outcome="replaced" if replaced else None)


async def _staging_key(resources: Resources, owner: str, upload_id: str) -> str | None:
    prefix = resources["settings"].s3_key_prefix
    found = await resources["storage"].list_keys(keys.upload_prefix(prefix, owner, upload_id), 1)
    return next((k for k in found.keys if keys.parse_key(prefix, k) is not None), None)


async def _round(
    resources: Resources, owner: str, upload_id: str, key: str | None, deliver: bool
) -> Promotion | None:
    """One look at an upload id; None when another replica changed things under us and we must look again."""
    storage, settings = resources["storage"], resources["settings"]
    found = await read_decision(resources, upload_id)
    if found is not None:
        decision, etag = found
        if decision.owner != owner:
            return Promotion("missing")
        return await _settle(resources, decision, etag, key, deliver)
    key = key or await _staging_key(resources, owner, upload_id)
    if key is None:
        return Promotion("missing")
    try:
        facts = await storage.facts(key)
    except NotFound:
        return Promotion("missing")
    if keys.upload_time(upload_id) + settings.staging_lifetime < time.time():
        await storage.delete(key)  # past its lifetime: a leftover, not an upload to announce now
        return Promotion("missing")
    filename = keys.parse_key(settings.s3_key_prefix, key)
    assert filename is not None
    target = keys.library_key(settings.s3_key_prefix, owner, upload_id, filename[2])
    try:
        verdict = await _verify(resources, owner, facts, filename[2])
    except NotFound:
        return None  # promoted (or deleted) by another racer while we read it: look again
    message, upload, refusal = _message(resources, owner, facts, verdict, target)
    decision = Decision(
        upload_id=upload_id,
        owner=owner,
        staging_key=key,
        source_etag=facts.etag,
        message=message,
        lease_until=time.time() + lease_seconds(resources, facts.size),
        upload=upload,
        refusal=refusal,
    )
    outbox = keys.outbox_key(settings.s3_key_prefix, upload_id)
    try:
        etag = await storage.put_record(outbox, encoder.encode(decision))
    except PreconditionFailed:
        return None  # another replica decided first: look again
    if await _read(storage, keys.decided_key(settings.s3_key_prefix, upload_id)) is not None:
        # Another racer claimed, announced and released the outbox while we verified: its
        # decided record is final, so ours must not announce again.
        await storage.delete(outbox)
        return None
    result = await finish(resources, decision, etag, deliver)
    return None if result.outcome == "missing" else result


async def _promote(
    resources: Resources, owner: str, upload_id: str, key: str | None, deliver: bool
) -> Promotion:
    for _ in range(MAX_ROUNDS):
        result = await _round(resources, owner, upload_id, key, deliver)
        if result is not None:
            return result
    return Promotion("pending")


async def promote_staged(resources: Resources, key: str, *, deliver: bool = True) -> Promotion:
    """Promote the staging object an S3 event (or the sweeper) names; other keys are ignored."""
    parsed = keys.parse_key(resources["settings"].s3_key_prefix, key)
    if parsed is None:
        return Promotion("ignored")
    return await _promote(resources, parsed[0], parsed[1], key, deliver)


async def promote_upload(resources: Resources, owner: str, upload_id: str) -> Promotion:
    """Promote one of ``owner``'s uploads by id (confirm), waiting briefly for another replica's run."""
    if not keys.UPLOAD_ID.match(upload_id):
        return Promotion("missing")
    result = await _promote(resources, owner, upload_id, None, True)
    for wait in SETTLE_WAITS:
        if result.outcome != "pending":
            break
        await asyncio.sleep(wait)
        result = await _promote(resources, owner, upload_id, None, True)
    return result
