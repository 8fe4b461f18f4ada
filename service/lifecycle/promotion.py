"""Promotion: verify a staging object and copy it into the library, once, whoever asks.

Three ways in run these same steps: the confirm route (``promote_upload``), the S3
events route (``promote_staged``) and the sweeper (``service.lifecycle.sweeper``). Each
step is idempotent and every choice between replicas is made by a conditional
write in the bucket, so concurrent or repeated runs converge on one library
object and one announcement per upload id:

1. An upload id is *decided* once: by whoever creates ``{prefix}decided/{id}.json``
   with ``If-None-Match: *`` after verifying the staging object. The record holds
   the outcome (confirmed or rejected), the announcement's body, the verified
   ETag and a lease, and says ``pending`` until the announcement is acknowledged.
   It stays while a staging object could reuse its id, so a late racer's or a
   re-POST's claim fails on it: nothing is read before claiming.
2. Confirmed: a server-side copy of exactly the verified version to the library
   key, with the canonical Content-Type and the facts learnt as metadata. Rejected:
   nothing is copied, and the staging object is deleted at once, its announcement
   queued in ``{prefix}outbox/{id}.json`` (a receiver told upload.rejected never
   finds the object).
3. The lease holder delivers the announcement (``msg_{id}``); once the receiver
   acknowledged, the record is rewritten final (``If-Match``) and only then is the
   staging object deleted. A staging object is therefore the mark of a promotion
   still under way: if its holder dies, the sweeper finds the object, meets the
   stale lease, takes it over with ``If-Match`` and finishes. A failed delivery
   releases the lease, queues ``{prefix}outbox/{id}.json`` for the sweeper and
   deletes the staging object.
4. A staging object whose id is already decided and final is a replacement (POST
   policies are reusable until they expire) or a duplicate: it is deleted, and
   the library is never overwritten.

Verification decodes the whole staging object in a worker process
(``service.lifecycle.decoding``), which streams it from the store, so a crafted
file costs one bounded job and never the event loop. The facts it learns are
written beside the library object (``service.core.sidecars``) before the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from service.core import audio_types as audio
from service.core import keys, sidecars
from service.core.checksums import PartsRecord, parts_decoder
from service.core.media_job import REFUSALS, RENDITION_TYPE, Answer, Changed, Decoded, Refused
from service.errors import ApiError
from service.lifecycle import decoding, folders
from service.lifecycle.integrity import (
    declares_part_checksums,
    digest_refusal,
    part_digests_refusal,
    parts_refusal,
    size_refusal,
)
from service.limits.reservations import Amount, Verdict
from service.observability import UPLOADS_CONFIRMED
from service.resources import Resources
from service.schemas import (
    RejectionEvent,
    RejectionMessage,
    RenditionUrl,
    Upload,
    UploadEvent,
    WebhookMessage,
    encoder,
)
from service.settings import Settings
from service.storage.client import ObjectFacts, Storage
from service.storage.errors import NotFound, PreconditionFailed

logger = logging.getLogger("soundpost.promotion")

Outcome = Literal["promoted", "rejected", "replaced", "missing", "ignored", "pending"]
# True: announce before answering; "later": in a task of its own (confirm), so a dead receiver never holds the answer.
Delivery = bool | Literal["later"]

# A promoter that claimed an upload but went quiet this long is presumed gone; others take over.
LEASE_MARGIN_SECONDS = 30
# A pessimistic server-side copy rate: a 5 GiB upload's lease covers its copy (about four minutes).
COPY_BYTES_PER_SECOND = 20 * 1024 * 1024
# Claims lost to another replica before this run gives up and reports "pending".
MAX_ROUNDS = 4
# The content type of facts not learnt by a HEAD: the decoding worker's read states it.
NOT_HEADED = ""
# How long confirm waits for another replica's promotion of the same upload to finish.
SETTLE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


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
    """The record of one upload id: who promotes it, what it became, whether it was announced."""

    upload_id: str
    owner: str
    staging_key: str
    source_etag: str
    message: str  # the announcement's JSON body, as delivered
    lease_until: float
    upload: Upload | None = None  # the library upload, when confirmed
    refusal: Refusal | None = None  # why it was deleted, when rejected
    attempts: int = 0
    parts_key: str | None = None  # the staging object's parts record, deleted with it
    # Claimed and not yet announced. Records written before claims and records were one
    # (a final one moved to decided/ once announced) have no such field: final.
    pending: bool = False

    @property
    def confirmed(self) -> bool:
        return self.upload is not None


_decision_decoder = msgspec.json.Decoder(Decision)


@dataclass(frozen=True)
class Verified:
    """A staging object that may enter the library: its canonical type and what decoding found."""

    canonical: str
    decoded: Decoded
    rendition_key: str | None


def deleted_record(owner: str, upload_id: str, key: str) -> Decision:
    """What DELETE leaves behind: the id is spent, and a reused POST policy cannot bring it back."""
    gone = Refusal(404, "not_found", "There is no such upload.")
    return Decision(upload_id, owner, key, source_etag="", message="", lease_until=0.0, refusal=gone)


def lease_seconds(resources: Resources, size: int) -> float:
    """Long enough to copy ``size`` bytes and deliver once, so a live holder is never taken over."""
    return resources["settings"].webhook_timeout + LEASE_MARGIN_SECONDS + size / COPY_BYTES_PER_SECOND


# --- verification ---------------------------------------------------------------------------


async def _admitted(resources: Resources, owner: str, upload_id: str, size: int, duration: float) -> Verdict:
    """Commit the verified amount in the quota ledger (atomically, shared by replicas)."""
    settings, storage = resources["settings"], resources["storage"]

    async def library() -> Amount:
        used, seconds = await folders.library_totals(storage, settings.s3_key_prefix, owner)
        return Amount(used, seconds)

    amount = Amount(size, duration)
    return await resources["reservations"].settle(
        owner, upload_id, amount, lease_seconds(resources, size), library
    )


def _refused(answer: Refused) -> Refusal:
    return Refusal(REFUSALS.get(answer.code, 422), answer.code, f"{answer.detail} The upload was removed.")


def _over_quota(settings: Settings, verdict: Verdict) -> Refusal | None:
    """The refusal a ledger's verdict means, or None when the upload fits."""
    if verdict is Verdict.OK:
        return None
    if verdict is Verdict.OVER_SECONDS:
        return Refusal(
            413,
            "duration_quota_exceeded",
            f"This upload would take your library past {settings.user_quota_seconds} seconds of audio; "
            "it was removed.",
        )
    return Refusal(
        413,
        "quota_exceeded",
        f"This upload would take your storage past {settings.user_quota_bytes} bytes; it was removed.",
    )


def _type_refusal(settings: Settings, facts: ObjectFacts, filename: str) -> Refusal | None:
    """Why the object's stored type cannot enter the library, or None when it can."""
    canonical = audio.library_type(facts.content_type, filename)
    if canonical is None or audio.canonical_type(facts.content_type) not in settings.allowed_types:
        return Refusal(
            422,
            "unsupported_type",
            f"{facts.content_type!r} is not an accepted audio type; the upload was removed.",
        )
    return None


def _as_stored(facts: ObjectFacts, answer: Answer) -> ObjectFacts:
    """``facts`` completed with the type and metadata the worker's read answered with (when not HEADed)."""
    stored = answer.stored if isinstance(answer, Decoded | Refused) else None
    if facts.content_type != NOT_HEADED or stored is None:
        return facts
    return dataclasses.replace(facts, content_type=stored.content_type, metadata=stored.metadata)


async def _decode(
    resources: Resources,
    owner: str,
    upload_id: str,
    facts: ObjectFacts,
    filename: str,
    parts: PartsRecord | None,
) -> tuple[ObjectFacts, Verified | Refusal]:
    """Decode in a worker, then take room in the quota; NotFound when the staging object changed under it.

    Not HEADed (``facts.content_type`` is NOT_HEADED), the worker decodes the object as the type it
    was stored with and answers that type and the metadata: the checks a HEAD allows come after.
    """
    settings, storage = resources["settings"], resources["storage"]
    rendition = decoding.rendition_key(resources, owner, upload_id)
    sizes = parts.sizes if parts is not None else None
    declared = (
        "" if facts.content_type == NOT_HEADED else audio.library_type(facts.content_type, filename) or ""
    )
    answer = await decoding.decode(resources, facts, declared, rendition, sizes)
    if isinstance(answer, Changed):
        raise NotFound(facts.key)
    facts = _as_stored(facts, answer)
    refusal = _type_refusal(settings, facts, filename) if facts.content_type != NOT_HEADED else None
    if refusal is None and isinstance(answer, Refused):
        refusal = _refused(answer)
    if refusal is None and isinstance(answer, Decoded):
        # The worker hashed every byte it decoded: the declared checksums are checked without a second read.
        mismatch = digest_refusal(facts, answer.sha256, answer.bytes_read)
        if mismatch is None and parts is not None:
            mismatch = part_digests_refusal(parts, answer.part_sha256)
        if mismatch is not None:
            refusal = Refusal(422, mismatch.code, mismatch.detail)
    if refusal is None and isinstance(answer, Decoded):
        # Last, so only a file that may enter the library takes room in the quota.
        verdict = await _admitted(resources, owner, upload_id, facts.size, answer.duration_seconds)
        refusal = _over_quota(settings, verdict)
    if refusal is not None or not isinstance(answer, Decoded):
        if rendition is not None:
            await storage.delete(rendition)
        return facts, refusal or Refusal(422, "corrupt", "The file does not decode; the upload was removed.")
    canonical = audio.library_type(facts.content_type, filename)
    assert canonical is not None  # _type_refusal passed
    return facts, Verified(canonical, answer, rendition if answer.rendition_bytes is not None else None)


async def _verify(
    resources: Resources, owner: str, upload_id: str, facts: ObjectFacts, filename: str
) -> tuple[ObjectFacts, Verified | Refusal]:
    """The facts, and the type and what decoding found when the staging object may enter the library, else why not."""
    settings = resources["settings"]
    if facts.size > settings.max_upload_bytes:
        return facts, Refusal(
            413,
            "file_too_large",
            f"Files may be at most {settings.max_upload_bytes} bytes; the upload was removed.",
        )
    if facts.content_type != NOT_HEADED and (refusal := _type_refusal(settings, facts, filename)) is not None:
        return facts, refusal
    if facts.size == 0:
        return facts, Refusal(422, "not_audio", "The file is empty; the upload was removed.")
    mismatch = size_refusal(facts)  # from HEAD: a PUT upload of another length is not worth decoding
    parts = None
    if mismatch is None and declares_part_checksums(facts.metadata):
        parts = await _declared_parts(resources, owner, upload_id)
        mismatch = parts_refusal(parts, facts.size)
    if mismatch is not None:
        return facts, Refusal(422, mismatch.code, mismatch.detail)
    return await _decode(resources, owner, upload_id, facts, filename, parts)


def _parts_key(resources: Resources, owner: str, upload_id: str, facts: ObjectFacts) -> str | None:
    """Where the staging object's parts record is, when it was created asking for part checksums."""
    if not declares_part_checksums(facts.metadata):
        return None
    return keys.parts_key(resources["settings"].s3_key_prefix, owner, upload_id)


async def _declared_parts(resources: Resources, owner: str, upload_id: str) -> PartsRecord | None:
    """The parts record complete wrote before assembling the object; None when it is gone or unreadable."""
    key = keys.parts_key(resources["settings"].s3_key_prefix, owner, upload_id)
    try:
        record = await resources["storage"].get_record(key)
        return parts_decoder.decode(record.body)
    except (NotFound, msgspec.DecodeError):
        return None


# --- records --------------------------------------------------------------------------------


async def read_record(storage: Storage, key: str) -> tuple[Decision, str] | None:
    """A record (an id's, or the copy an outbox entry holds) and its ETag; None when there is none."""
    try:
        record = await storage.get_record(key)
    except NotFound:
        return None
    return _decision_decoder.decode(record.body), record.etag


async def read_decision(resources: Resources, upload_id: str) -> tuple[Decision, str] | None:
    """The id's record and its ETag (for ``If-Match``), or None when nobody decided it."""
    return await read_record(
        resources["storage"], keys.decided_key(resources["settings"].s3_key_prefix, upload_id)
    )


async def _rendition_link(resources: Resources, key: str | None) -> RenditionUrl | None:
    """A presigned GET of the rendition for the announcement, on the browser-visible endpoint."""
    if key is None:
        return None
    url = await resources["storage"].presign_operation("get_object", key, ResponseContentType=RENDITION_TYPE)
    return RenditionUrl(url, resources["storage"].expiry(resources["settings"].presign_ttl), RENDITION_TYPE)


def _message(
    resources: Resources,
    owner: str,
    facts: ObjectFacts,
    verdict: Verified | Refusal,
    target: str,
    rendition: RenditionUrl | None = None,
) -> tuple[str, Upload | None, Refusal | None]:
    """The announcement's body, and the upload or the refusal it announces."""
    settings = resources["settings"]
    parsed = keys.parse_key(settings.s3_key_prefix, facts.key)
    assert parsed is not None
    now = datetime.now(UTC)
    if isinstance(verdict, Refusal):
        event = RejectionEvent(
            id=parsed.upload_id,
            key=facts.key,
            bucket=settings.s3_bucket,
            user=owner,
            size=facts.size,
            content_type=facts.content_type,
            code=verdict.code,
            detail=verdict.detail,
        )
        return encoder.encode(RejectionMessage("upload.rejected", now, event)).decode(), None, verdict
    canonical, duration, audio_facts = (
        verdict.canonical,
        verdict.decoded.duration_seconds,
        verdict.decoded.audio,
    )
    peaks_url, rendition_url = folders.links(settings, parsed.upload_id, verdict.rendition_key is not None)
    upload = Upload(
        id=parsed.upload_id,
        key=target,
        filename=parsed.filename,
        size=facts.size,
        content_type=canonical,
        uploaded_at=now.replace(microsecond=0),
        duration_seconds=duration,
        audio=audio_facts,
        peaks_url=peaks_url,
        rendition_url=rendition_url,
    )
    data = UploadEvent(
        id=upload.id,
        key=target,
        bucket=settings.s3_bucket,
        user=owner,
        size=upload.size,
        content_type=canonical,
        duration_seconds=duration,
        audio=audio_facts,
        rendition_key=verdict.rendition_key,
        rendition=rendition,
    )
    return encoder.encode(WebhookMessage("upload.confirmed", now, data)).decode(), upload, None


# --- the steps ------------------------------------------------------------------------------


async def keep_facts(resources: Resources, owner: str, upload_id: str, decoded: Decoded) -> None:
    """The peaks, under a name stating the facts, beside where the upload is (or is copied next)."""
    name = sidecars.facts_name(decoded.duration_seconds, decoded.audio)
    key = keys.sidecar_key(resources["settings"].s3_key_prefix, owner, upload_id, name)
    await resources["storage"].put_plain(key, encoder.encode(decoded.peaks))


def _facts_key(settings: Settings, decision: Decision) -> str | None:
    """Where the facts and peaks of a decision's verified version were written, or None for a refusal."""
    upload = decision.upload
    if upload is None or upload.duration_seconds is None or upload.audio is None:
        return None
    name = sidecars.facts_name(upload.duration_seconds, upload.audio)
    return keys.sidecar_key(settings.s3_key_prefix, decision.owner, decision.upload_id, name)


async def _drop_stale_facts(resources: Resources, mine: Decision, standing: Decision | None) -> None:
    """Remove the facts this promoter wrote when the decision that stands (None: no decision) is not of the same facts.

    Facts are written before the claim, so a promoter that decoded a replaced version and then
    lost the claim, or whose copy found the version gone, would otherwise leave a second facts
    sidecar beside the upload (its name states other facts). Same facts, same name: kept.
    """
    settings = resources["settings"]
    ours = _facts_key(settings, mine)
    if ours is not None and (standing is None or _facts_key(settings, standing) != ours):
        await resources["storage"].delete(ours)


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
    return True


async def _in_library(storage: Storage, upload: Upload) -> bool:
    try:
        await storage.facts(upload.key)
    except NotFound:
        return False
    return True


async def _remove_staging(storage: Storage, decision: Decision) -> None:
    """Delete the staging object (and its parts record): the promotion no longer needs its mark."""
    await storage.delete(decision.staging_key)
    if decision.parts_key is not None:
        await storage.delete(decision.parts_key)


async def _queue(resources: Resources, decision: Decision) -> None:
    """The outbox entry that asks the sweeper to deliver an announcement (a copy of the record, for the operator)."""
    outbox = keys.outbox_key(resources["settings"].s3_key_prefix, decision.upload_id)
    await resources["storage"].put_plain(outbox, encoder.encode(decision))


async def _deliver(
    resources: Resources, decision: Decision, etag: str, *, send: bool = True, queued: bool = False
) -> bool:
    """Announce as lease holder, then make the record final and delete staging; on failure queue it instead.

    ``queued``: an outbox entry exists for this id, to be deleted once it is announced.
    """
    storage, prefix = resources["storage"], resources["settings"].s3_key_prefix
    record = keys.decided_key(prefix, decision.upload_id)
    sender = resources["webhooks"] if decision.message else None
    if not send or (
        sender is not None and not await sender.deliver(f"msg_{decision.upload_id}", decision.message)
    ):
        released = msgspec.structs.replace(decision, lease_until=0.0)
        with contextlib.suppress(PreconditionFailed, NotFound):  # taken over (or deleted): theirs to finish
            await storage.put_record(record, encoder.encode(released), if_match=etag)
            if not queued:
                await _queue(resources, released)
            await _remove_staging(storage, decision)
        logger.warning("upload %s not announced yet; the sweeper will deliver it", decision.upload_id)
        return False
    final = msgspec.structs.replace(decision, pending=False)
    with contextlib.suppress(PreconditionFailed, NotFound):  # a DELETE's record keeps the last word
        await storage.put_record(record, encoder.encode(final), if_match=etag)
    await _remove_staging(storage, decision)
    if queued:
        await storage.delete(keys.outbox_key(prefix, decision.upload_id))
    return sender is not None


# Announcements under way in the background, by event loop (each app's lifespan waits for its own).
_later: set[asyncio.Task[None]] = set()


async def _announce(resources: Resources, decision: Decision, etag: str, queued: bool) -> None:
    try:
        await _deliver(resources, decision, etag, queued=queued)
    except Exception:  # the lease runs out and the sweeper delivers: log, never lose the task's error
        logger.exception("upload %s not announced yet; the sweeper will deliver it", decision.upload_id)


def _deliver_later(resources: Resources, decision: Decision, etag: str, queued: bool) -> None:
    """Announce as lease holder in a task of its own; a failure leaves it to the sweeper."""
    task = asyncio.create_task(
        _announce(resources, decision, etag, queued), name=f"announce-{decision.upload_id}"
    )
    _later.add(task)
    task.add_done_callback(_later.discard)


async def announcements_finished(grace: float) -> None:
    """At shutdown: let announcements under way finish for ``grace`` seconds, then stop them.

    A stopped one leaves its record pending and its staging object (or outbox entry) in place;
    its lease runs out and the sweeper delivers it.
    """
    loop = asyncio.get_running_loop()
    mine = {task for task in _later if task.get_loop() is loop}
    if not mine:
        return
    _, unfinished = await asyncio.wait(mine, timeout=grace)
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)


async def take_over(resources: Resources, decision: Decision, etag: str) -> tuple[Decision, str] | None:
    """Take a stale lease with If-Match; None when it is fresh or another replica took it first."""
    if decision.lease_until > time.time():
        return None
    mine = msgspec.structs.replace(
        decision,
        lease_until=time.time() + lease_seconds(resources, decision.upload.size if decision.upload else 0),
        attempts=decision.attempts + 1,
    )
    record = keys.decided_key(resources["settings"].s3_key_prefix, decision.upload_id)
    try:
        return mine, await resources["storage"].put_record(record, encoder.encode(mine), if_match=etag)
    except (PreconditionFailed, NotFound):
        return None


async def finish(
    resources: Resources,
    decision: Decision,
    etag: str,
    deliver: Delivery = True,
    claimed: bool = False,
    queued: bool = False,
) -> Promotion:
    """As lease holder: copy if not yet in the library, announce, then delete staging.

    ``claimed``: this holder created the record itself, so no earlier holder can
    have copied: the copy goes ahead without a HEAD of the library. ``queued``: the
    sweeper found the id in the outbox.
    """
    storage, ledger = resources["storage"], resources["reservations"]
    copy_needed = decision.upload is not None and (claimed or not await _in_library(storage, decision.upload))
    if copy_needed and not await _copy(resources, decision):
        assert decision.upload is not None
        if await _in_library(storage, decision.upload):
            # Another holder copied it: radosgw's If-None-Match is not atomic under concurrent
            # claims, so two can hold one id. The first announces; voiding the record here
            # would leave the upload with neither a staging object nor a decision (confirm's 404).
            return _answer(decision)
        # The verified version is gone (deleted or replaced): the decision is void, start again.
        await _drop_stale_facts(resources, decision, None)
        await storage.delete(keys.decided_key(resources["settings"].s3_key_prefix, decision.upload_id))
        await ledger.release(decision.owner, decision.upload_id)
        return Promotion("missing")
    if decision.upload is not None:
        UPLOADS_CONFIRMED.inc()
        await ledger.copied(
            decision.owner, decision.upload_id, lease_seconds(resources, decision.upload.size)
        )
    else:
        await ledger.release(decision.owner, decision.upload_id)  # its pending slot (and nothing else)
        if not queued:
            # Refused: nothing in the library stands for it, so its staging object goes before the
            # answer and the announcement (the listing would show it pending, a receiver might look
            # for it); the outbox entry marks the announcement instead.
            await _queue(resources, decision)
            await _remove_staging(storage, decision)
            queued = True
    if deliver == "later":
        _deliver_later(resources, decision, etag, queued)
        return _answer(decision)
    announced = await _deliver(resources, decision, etag, send=bool(deliver), queued=queued)
    return _answer(decision, announced)


def _answer(decision: Decision, announced: bool = False, outcome: Outcome | None = None) -> Promotion:
    if decision.upload is not None:
        return Promotion(outcome or "promoted", upload=decision.upload, announced=announced)
    assert decision.refusal is not None
    return Promotion(outcome or "rejected", error=decision.refusal.error(), announced=announced)


async def _settle(
    resources: Resources, decision: Decision, etag: str, key: str | None, deliver: Delivery
) -> Promotion | None:
    """An id already decided: finish a stalled promotion, clear a replacement; None to look again."""
    storage = resources["storage"]
    if decision.pending:
        if decision.lease_until <= time.time():
            taken = await take_over(resources, decision, etag)
            if taken is None:
                return None  # another replica took it first: look again
            result = await finish(resources, *taken, deliver=deliver)
            return None if result.outcome == "missing" else result
        # Its holder is at work and removes the staging object itself once it announced.
        if decision.refusal is not None or (
            decision.upload is not None and await _in_library(storage, decision.upload)
        ):
            return _answer(decision)
        return Promotion("pending")  # the holder is between claim and copy
    replaced = False
    if key is not None:
        try:
            facts = await storage.facts(key)
            replaced = facts.etag != decision.source_etag
            parts = _parts_key(resources, decision.owner, decision.upload_id, facts)
            if parts is not None:
                await storage.delete(parts)
        except NotFound:
            pass
        await storage.delete(key)
    return _answer(decision, outcome="replaced" if replaced else None)


async def _staging_facts(
    resources: Resources, owner: str, upload_id: str, key: str | None
) -> ObjectFacts | None:
    """The staging object's facts, or None when there is none.

    Confirm knows only the id, so it LISTs the upload's folder. A single-part object found
    that way is not HEADed: the LIST gave its size and ETag, and the decoding worker's read
    answers its type and metadata (NOT_HEADED until then). A multipart one is HEADed, since
    its metadata says whether a parts record is to be read before decoding.
    """
    storage, prefix = resources["storage"], resources["settings"].s3_key_prefix
    if key is None:
        # Two: a parts record (``.parts.json``) sorts before the staging object it describes.
        found = await storage.list_objects(keys.upload_prefix(prefix, owner, upload_id), 2)
        listed = next((o for o in found.objects if keys.parse_key(prefix, o.key) is not None), None)
        if listed is None:
            return None
        if "-" not in listed.etag:
            return ObjectFacts(listed.key, listed.size, NOT_HEADED, listed.last_modified, listed.etag, {})
        key = listed.key
    try:
        return await storage.facts(key)
    except NotFound:
        return None


async def _gone(resources: Resources, owner: str, upload_id: str, deliver: Delivery) -> Promotion | None:
    """No staging object: decided already (its answer, or its stalled announcement finished), or missing."""
    found = await read_decision(resources, upload_id)
    if found is None or found[0].owner != owner:
        return Promotion("missing")
    return await _settle(resources, *found, None, deliver)


async def _round(
    resources: Resources, owner: str, upload_id: str, key: str | None, deliver: Delivery
) -> Promotion | None:
    """One look at an upload id; None when another replica changed things under us and we must look again."""
    storage, settings = resources["storage"], resources["settings"]
    # No record is read first: an upload is usually promoted once, while its staging object exists.
    # One already decided has none (promotion deletes it last) and is answered from its record in
    # ``_gone``; a staging object sent again after its id was decided loses the claim below.
    facts = await _staging_facts(resources, owner, upload_id, key)
    if facts is None:
        return await _gone(resources, owner, upload_id, deliver)
    key = facts.key
    if keys.upload_time(upload_id) + settings.staging_lifetime < time.time():
        standing = await read_decision(resources, upload_id)
        if standing is not None and standing[0].pending and standing[0].owner == owner:
            return await _settle(resources, *standing, key, deliver)  # its promoter died: finish the job
        await storage.delete(key)  # past its lifetime: a leftover, not an upload to announce now
        if (parts_key := _parts_key(resources, owner, upload_id, facts)) is not None:
            await storage.delete(parts_key)
        return Promotion("missing")
    parsed = keys.parse_key(settings.s3_key_prefix, key)
    assert parsed is not None
    target = keys.library_key(settings.s3_key_prefix, owner, upload_id, parsed.filename)
    try:
        facts, verdict = await _verify(resources, owner, upload_id, facts, parsed.filename)
    except NotFound:
        return None  # promoted (or deleted) by another racer while we read it: look again
    parts_key = _parts_key(resources, owner, upload_id, facts)
    rendition: RenditionUrl | None = None
    if isinstance(verdict, Verified):
        rendition = await _rendition_link(resources, verdict.rendition_key)
        await keep_facts(resources, owner, upload_id, verdict.decoded)
    message, upload, refusal = _message(resources, owner, facts, verdict, target, rendition)
    decision = Decision(
        upload_id=upload_id,
        owner=owner,
        staging_key=key,
        source_etag=facts.etag,
        message=message,
        lease_until=time.time() + lease_seconds(resources, facts.size),
        upload=upload,
        refusal=refusal,
        parts_key=parts_key,
        pending=True,
    )
    try:
        etag = await storage.put_record(
            keys.decided_key(settings.s3_key_prefix, upload_id), encoder.encode(decision)
        )
    except PreconditionFailed:
        # Decided first by a racer, or before: the same upload sent again, or a DELETE's record.
        standing = await read_decision(resources, upload_id)
        await _drop_stale_facts(resources, decision, standing[0] if standing else None)
        if standing is None:
            return None  # voided meanwhile: look again
        if standing[0].owner != owner:
            return Promotion("missing")
        return await _settle(resources, *standing, key, deliver)
    result = await finish(resources, decision, etag, deliver, claimed=True)
    return None if result.outcome == "missing" else result


async def _promote(
    resources: Resources, owner: str, upload_id: str, key: str | None, deliver: Delivery
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
    return await _promote(resources, parsed.owner, parsed.upload_id, key, deliver)


async def promote_upload(resources: Resources, owner: str, upload_id: str) -> Promotion:
    """Promote one of ``owner``'s uploads by id (confirm), waiting briefly for another replica's run."""
    if not keys.UPLOAD_ID.match(upload_id):
        return Promotion("missing")
    result = await _promote(resources, owner, upload_id, None, "later")
    for wait in SETTLE_WAITS:
        if result.outcome != "pending":
            break
        await asyncio.sleep(wait)
        result = await _promote(resources, owner, upload_id, None, "later")
    return result
