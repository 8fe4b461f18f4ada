"""Decoding a staging object in a worker process: start it, bound it, read its one-line answer.

The web process never parses media (import-linter forbids it to import ``av``):
it presigns a GET of the staging object (and a PUT for the rendition) and hands
them to a process forked for the job by ``service.media.forkserver``
(``service.lifecycle.forking``). That process streams the object from the store
itself, so the bytes never pass through the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import weakref

import msgspec

from service.core import keys, sidecars
from service.core.media_job import Answer, Job, Refused, answer_decoder
from service.errors import ApiError
from service.lifecycle import forking
from service.resources import Resources
from service.storage.client import ObjectFacts

logger = logging.getLogger("soundpost.decoding")

# Two decoders per core at a time: a job also waits on the store while it streams the file, so one
# per core left the cores idle (32 WAVs confirmed at once: 78 % busy with one per core, 88 % with two);
# more would only queue on the CPU while holding memory. Jobs run at a lower priority than the web process.
DECODERS = 2 * (os.cpu_count() or 1)
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
MiB = 1024 * 1024


def unavailable(reason: str) -> ApiError:
    """Decoding did not finish for a reason of ours (not the file's): the upload stays staged for a retry."""
    return ApiError(
        503,
        "decoding_unavailable",
        f"The upload could not be checked just now ({reason}); it will be checked again shortly.",
        headers={"Retry-After": "5"},
    )


async def _run(
    resources: Resources,
    facts: ObjectFacts,
    declared: str,
    rendition_key: str | None,
    part_sizes: list[int] | None,
) -> tuple[int, bytes]:
    """Sign the job's URLs and run it within SOUNDPOST_DECODE_TIMEOUT: (exit status, answer line)."""
    settings, storage = resources["settings"], resources["storage"]
    ttl = settings.decode_timeout + 60
    job = Job(
        source_url=await storage.presign_internal("get_object", facts.key, ttl),
        size=facts.size,
        etag=facts.etag,
        declared=declared,
        max_seconds=float(settings.max_duration_seconds),
        rendition_url=(
            await storage.presign_internal("put_object", rendition_key, ttl, ContentType="audio/flac")
            if rendition_key
            else None
        ),
        cpu_seconds=settings.decode_cpu_seconds,
        memory_bytes=settings.decode_memory_mib * MiB,
        read_timeout=float(settings.s3_read_timeout),
        part_sizes=part_sizes,
        filename=facts.key.rsplit("/", 1)[-1],
    )
    try:
        async with asyncio.timeout(settings.decode_timeout):
            return await forking.run_job(job)
    except forking.ForkServerGone as exc:
        logger.error("the decoding fork server ended during %s (%s); the sweeper retries", facts.key, exc)
        raise unavailable("the decoder stopped") from None
    except TimeoutError:
        logger.error(
            "decoding %s passed SOUNDPOST_DECODE_TIMEOUT (%ss) and was stopped; "
            "raise it if the store is slow, the sweeper retries",
            facts.key,
            settings.decode_timeout,
        )
        raise unavailable("it took too long") from None


async def decode(
    resources: Resources,
    facts: ObjectFacts,
    declared: str,
    rendition_key: str | None,
    part_sizes: list[int] | None = None,
) -> Answer:
    """Decode ``facts.key`` (exactly version ``facts.etag``) in a worker within the configured limits.

    ``declared`` "" decodes it as the type it was stored with (the answer states it). With
    ``part_sizes`` the worker also hashes each of those consecutive ranges, in the same read.
    """
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop) or _slots.setdefault(loop, asyncio.Semaphore(DECODERS))
    async with slots:  # the URLs are signed once a slot is free, so waiting never eats into their lifetime
        code, out = await _run(resources, facts, declared, rendition_key, part_sizes)
    settings = resources["settings"]
    if code == -signal.SIGXCPU:
        return Refused(
            "too_complex",
            f"Decoding the file needs more than the {settings.decode_cpu_seconds} s of CPU a job may use.",
        )
    if code != 0:
        logger.error(
            "decoding worker for %s ended with status %s (its stderr is in this process's log); "
            "the upload stays staged and is retried",
            facts.key,
            code,
        )
        raise unavailable("the decoder stopped")
    try:
        return answer_decoder.decode(out)
    except msgspec.DecodeError:
        logger.error("decoding worker for %s answered %r", facts.key, out[:200])
        raise unavailable("the decoder answered nonsense") from None


def rendition_key(resources: Resources, owner: str, upload_id: str) -> str | None:
    """Where this upload's rendition goes, or None when renditions are off."""
    settings = resources["settings"]
    if settings.renditions != "speech":
        return None
    return keys.sidecar_key(settings.s3_key_prefix, owner, upload_id, sidecars.RENDITION)
