"""The sweeper: what nobody else finished, one pass at a time, safe from several replicas at once.

A pass promotes staging objects older than SOUNDPOST_STAGING_GRACE that no confirm
or event promoted, deletes staging objects and aborts multipart uploads older than
SOUNDPOST_STAGING_LIFETIME, redelivers queued announcements whose lease went stale,
forgets records once no staging object can reuse their id (a staging object whose
promoter died is promoted again: it finds the stale lease and finishes the job), recounts
each user's library bytes, and decodes library uploads that predate decoding. Every step is the idempotent, conditional one that
promotion uses, so two replicas sweeping at once converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from service.core import audio_types as audio
from service.core import keys, sidecars
from service.core.media_job import Decoded, Refused
from service.event_pushes import PUSHES
from service.identity.revocation import Revocations
from service.lifecycle import decoding, folders, promotion
from service.limits.connection import shared_connection
from service.limits.shared_reservations import open_reservations
from service.limits.windows import close_limiters, open_limiters
from service.resources import Resources
from service.schemas import encoder
from service.settings import Settings
from service.storage.client import Listed, open_storage
from service.storage.errors import NotFound, PreconditionFailed, StorageUnavailable
from service.webhooks import open_webhooks

logger = logging.getLogger("soundpost.sweeper")

T = TypeVar("T")

PAGE = 1000
# Objects a pass looks at per area; the next pass carries on where work is left.
MAX_PER_PASS = 10_000
# Uploads promoted before uploads were decoded, decoded per pass at most (each once, ever).
BACKFILLS_PER_PASS = 20
# Replicas' clocks may disagree by this much about when an account last moved.
RECOUNT_CLOCK_MARGIN = 30.0


@dataclass
class SweepReport:
    """What one pass did, for the log line and for tests."""

    promoted: int = 0
    rejected: int = 0
    replaced: int = 0
    expired: int = 0
    aborted: int = 0
    redelivered: int = 0
    forgotten: int = 0
    backfilled: int = 0
    undecodable: int = 0
    recounted: dict[str, int] = field(default_factory=dict)


async def _objects(resources: Resources, prefix: str) -> list[Listed]:
    storage = resources["storage"]
    found: list[Listed] = []
    after: str | None = None
    while len(found) < MAX_PER_PASS:
        page = await storage.list_objects(prefix, PAGE, after)
        found += page.objects
        if page.next_start_after is None:
            break
        after = page.next_start_after
    return found


async def _guarded(step: Awaitable[T], key: str) -> T | None:
    """One object's trouble (a store error, a malformed record) is logged and the pass goes on."""
    try:
        return await step
    except StorageUnavailable:
        raise  # nothing else will work either: end the pass
    except Exception:
        logger.exception("sweep: %s left for the next pass", key)
        return None


async def _staging(resources: Resources, report: SweepReport) -> None:
    settings, storage = resources["settings"], resources["storage"]
    now = time.time()
    for item in await _objects(resources, keys.area_prefix(settings.s3_key_prefix, keys.STAGING)):
        parsed = keys.parse_key(settings.s3_key_prefix, item.key)
        record = keys.parse_parts_key(settings.s3_key_prefix, item.key)
        age = now - item.last_modified.timestamp()
        named = parsed or record
        too_old = named is not None and keys.upload_time(named.upload_id) + settings.staging_lifetime < now
        if record is not None and not too_old and age <= settings.staging_lifetime:
            continue  # a parts record: promotion deletes it with its staging object
        if parsed is None or (record is not None and (too_old or age > settings.staging_lifetime)):
            await storage.delete(item.key)  # not ours to keep: a stray key, or past its lifetime
            report.expired += 1
        elif too_old or age >= settings.staging_grace:
            # Past its lifetime, promotion deletes it too, unless it marks a promotion whose holder died.
            result = await _guarded(promotion.promote_staged(resources, item.key), item.key)
            if result is None:
                continue
            if result.outcome == "missing":
                report.expired += 1
            elif result.outcome == "promoted":
                report.promoted += 1
            elif result.outcome == "rejected":
                report.rejected += 1
            elif result.outcome == "replaced":
                report.replaced += 1


async def _multipart(resources: Resources, report: SweepReport) -> None:
    settings, storage = resources["settings"], resources["storage"]
    now = time.time()
    area = keys.area_prefix(settings.s3_key_prefix, keys.STAGING)
    for upload in await storage.open_uploads(area, MAX_PER_PASS):
        if now - upload.initiated.timestamp() > settings.staging_lifetime:
            try:
                await storage.abort_multipart(upload.key, upload.upload_id)
            except NotFound:
                continue  # another replica aborted it first
            report.aborted += 1


async def _adopted(resources: Resources, upload_id: str, entry: str) -> tuple[promotion.Decision, str] | None:
    """An outbox entry with no record beside it was written by an earlier version, where the
    outbox held the pending record itself: it becomes the id's pending record."""
    storage, prefix = resources["storage"], resources["settings"].s3_key_prefix
    legacy = await promotion.read_record(storage, entry)
    if legacy is None:
        return None
    pending = msgspec.structs.replace(legacy[0], pending=True)
    with contextlib.suppress(PreconditionFailed):  # another replica adopted it first
        await storage.put_record(keys.decided_key(prefix, upload_id), encoder.encode(pending))
    return await promotion.read_decision(resources, upload_id)


async def _redeliver(resources: Resources, upload_id: str, entry: str) -> promotion.Promotion:
    """Deliver one queued announcement if its lease is stale and this replica wins the takeover."""
    found = await promotion.read_decision(resources, upload_id) or await _adopted(resources, upload_id, entry)
    if found is None or not found[0].pending:
        await resources["storage"].delete(entry)  # delivered meanwhile (or the upload deleted)
        return promotion.Promotion("missing")
    taken = await promotion.take_over(resources, *found)
    if taken is None:
        return promotion.Promotion("pending")  # its holder is alive, or another replica took it
    return await promotion.finish(resources, *taken, queued=True)


async def _outbox(resources: Resources, report: SweepReport) -> set[str]:
    """Deliver what is queued; the ids that were queued, whose records this pass must not forget."""
    prefix = resources["settings"].s3_key_prefix
    queued = set()
    for item in await _objects(resources, keys.record_prefix(prefix, keys.OUTBOX)):
        upload_id = keys.parse_record_key(prefix, keys.OUTBOX, item.key)
        if upload_id is None:
            continue
        queued.add(upload_id)
        result = await _guarded(_redeliver(resources, upload_id, item.key), item.key)
        if result is not None and result.announced:
            report.redelivered += 1
    return queued


async def _decided(resources: Resources, report: SweepReport, queued: set[str]) -> None:
    """Records are kept while a staging object could still reuse their id, then dropped (never while queued)."""
    settings, storage = resources["settings"], resources["storage"]
    horizon = time.time() - 2 * settings.staging_lifetime
    for item in await _objects(resources, keys.record_prefix(settings.s3_key_prefix, keys.DECIDED)):
        upload_id = keys.parse_record_key(settings.s3_key_prefix, keys.DECIDED, item.key)
        if upload_id in queued:
            continue
        if upload_id is None or keys.upload_time(upload_id) < horizon:
            await storage.delete(item.key)
            report.forgotten += 1


async def _recount(resources: Resources, report: SweepReport, library: list[Listed], since: float) -> None:
    """Correct each quota account from the library, where nothing moved it since ``since`` (before the LIST)."""
    settings = resources["settings"]
    if settings.user_quota_bytes is None:
        return
    prefix = settings.s3_key_prefix
    totals: dict[str, int] = defaultdict(int)
    for item in library:
        parsed = keys.parse_library_key(prefix, item.key)
        if parsed is not None:
            totals[parsed.owner] += item.size
    for owner, total in totals.items():
        await resources["reservations"].recount(owner, total, since)
    report.recounted = dict(totals)


async def _backfill_one(resources: Resources, key: str) -> bool | None:
    """Decode one library upload that has no facts, as promotion would: True with facts, False if refused."""
    settings, storage = resources["settings"], resources["storage"]
    parsed = keys.parse_library_key(settings.s3_key_prefix, key)
    assert parsed is not None
    facts = await storage.facts(key)
    declared = audio.canonical_type(facts.content_type) or facts.content_type
    rendition = decoding.rendition_key(resources, parsed.owner, parsed.upload_id)
    answer = await decoding.decode(resources, facts, declared, rendition)
    if isinstance(answer, Decoded):
        await promotion.keep_facts(resources, parsed.owner, parsed.upload_id, answer)
        return True
    if rendition is not None:
        await storage.delete(rendition)
    if isinstance(answer, Refused):
        logger.warning(
            "sweep: %s, promoted before uploads were decoded, does not decode: %s", key, answer.code
        )
        marker = keys.sidecar_key(
            settings.s3_key_prefix, parsed.owner, parsed.upload_id, sidecars.UNDECODABLE
        )
        await storage.put_plain(marker, encoder.encode(answer))
        return False
    return None  # changed while read: the next pass tries again


async def _backfill(resources: Resources, report: SweepReport, library: list[Listed]) -> None:
    """Facts, peaks (and renditions) for uploads promoted before uploads were decoded, a few per pass."""
    prefix = resources["settings"].s3_key_prefix
    missing = [
        f.upload.key
        for f in folders.folders(library, prefix)
        if f.upload is not None and f.facts is None and not f.undecodable
    ]
    for key in missing[:BACKFILLS_PER_PASS]:
        done = await _guarded(_backfill_one(resources, key), key)
        if done is True:
            report.backfilled += 1
        elif done is False:
            report.undecodable += 1


async def sweep(resources: Resources) -> SweepReport:
    """One pass over staging, multipart uploads, the outbox and decided records; then recount usage."""
    report = SweepReport()
    await _staging(resources, report)
    await _multipart(resources, report)
    queued = await _outbox(resources, report)
    await _decided(resources, report, queued)
    since = time.time() - RECOUNT_CLOCK_MARGIN
    library = await _objects(resources, keys.area_prefix(resources["settings"].s3_key_prefix, keys.LIBRARY))
    await _recount(resources, report, library, since)  # one LIST of the library serves both
    await _backfill(resources, report, library)
    PUSHES.after_sweep(
        resources["settings"].events_token is not None, report.promoted + report.rejected + report.replaced
    )
    logger.info(
        "sweep: %d promoted, %d rejected, %d replaced, %d expired, %d aborted, %d redelivered, %d forgotten, "
        "%d backfilled, %d undecodable",
        report.promoted,
        report.rejected,
        report.replaced,
        report.expired,
        report.aborted,
        report.redelivered,
        report.forgotten,
        report.backfilled,
        report.undecodable,
    )
    return report


async def sweep_periodically(resources: Resources, interval: float) -> None:
    """SOUNDPOST_SWEEP_INTERVAL: a pass every ``interval`` seconds for the life of the process."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(resources)
        except StorageUnavailable as exc:
            logger.warning("sweep skipped: S3 unreachable (%s)", exc.advice)
        except Exception:
            logger.exception("sweep failed; the next pass tries again")


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """What promotion needs, outside the app: for ``soundpost sweep`` (and tests that drive promotion).

    A pass signs nobody in or out, so it has no provider clients and an in-process,
    never consulted revocation table instead of a Redis follower.
    """
    shared = shared_connection(settings)
    async with (
        open_storage(settings) as storage,
        open_webhooks(settings) as webhooks,
        open_reservations(settings, shared) as reservations,
    ):
        limiters = open_limiters(settings, shared)
        try:
            yield Resources(
                settings=settings,
                storage=storage,
                webhooks=webhooks,
                limiters=limiters,
                providers={},
                revocations=Revocations(settings.session_max_age),
                reservations=reservations,
            )
        finally:
            close_limiters(limiters)


async def sweep_once(settings: Settings) -> SweepReport:
    """``soundpost sweep``: open what a pass needs, run one, close everything."""
    async with open_resources(settings) as state:
        return await sweep(state)
