"""What the store does, probed rather than assumed: start-up's cheap check and ``soundpost bucket check``.

Each probe writes (and removes) a few bytes under ``{prefix}probe/`` and reports
``True`` (the store does it), ``False`` (it does not) or ``None`` (no telling: the
store failed the probe for another reason). Start-up runs only the POST-upload and
``If-None-Match`` probes: the first settles SOUNDPOST_UPLOAD_METHOD=auto, the second
guards the exactly-once announcements that conditional writes decide.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from botocore.exceptions import BotoCoreError, ClientError

from service.settings import Settings
from service.storage.bucket import RULE_ID
from service.storage.client import STARTUP_CHECK_SECONDS, Storage, open_storage
from service.storage.errors import PreconditionFailed, StorageError

logger = logging.getLogger("soundpost.storage")

PROBE_BYTES = b"soundpost capability probe"
HTTP_SECONDS = 10.0
# What stores answer to an operation they do not implement (R2: 501 NotImplemented to POST Object).
NOT_IMPLEMENTED = (405, 501)


class StoreUnsuitable(RuntimeError):
    """Start-up found a store that cannot keep a guarantee Soundpost needs; the message says which."""


@dataclass(frozen=True)
class Finding:
    """One probed behaviour: what the store did, and what Soundpost does about it."""

    name: str
    supported: bool | None
    when_yes: str
    when_no: str
    needed: bool = False  # Soundpost cannot keep its guarantees without it

    @property
    def consequence(self) -> str:
        return self.when_no if self.supported is False else self.when_yes if self.supported else "unknown"

    @property
    def missing(self) -> bool:
        return self.needed and self.supported is not True


def probe_key(storage: Storage) -> str:
    return f"{storage.settings.s3_key_prefix}probe/{secrets.token_hex(16)}"


async def _send(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=HTTP_SECONDS) as client:
        return await client.request(method, url, **kwargs)


async def _remove(storage: Storage, *keys: str) -> None:
    for key in keys:
        with contextlib.suppress(StorageError):
            await storage.delete(key)


async def post_uploads(storage: Storage) -> bool | None:
    """A browser-style POST with a policy to the endpoint the app reaches: stored (True) or not implemented (False)."""
    key = probe_key(storage)
    try:
        post = await storage.s3.generate_presigned_post(
            Bucket=storage.bucket,
            Key=key,
            Fields={"success_action_status": "201"},
            Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 1024]],
            ExpiresIn=60,
        )
        answer = await _send("POST", post["url"], data=post["fields"], files={"file": ("probe", PROBE_BYTES)})
    except (BotoCoreError, httpx.HTTPError) as exc:
        logger.warning("POST-upload probe failed: %s", exc)
        return None
    finally:
        await _remove(storage, key)
    if answer.status_code in NOT_IMPLEMENTED:
        return False
    if answer.is_success:
        return True
    logger.warning("POST-upload probe: the store answered %s %s", answer.status_code, answer.text[:200])
    return None


async def _presigned_put(storage: Storage, key: str, **params: Any) -> str:
    url: str = await storage.s3.generate_presigned_url(
        "put_object", Params={"Bucket": storage.bucket, "Key": key, **params}, ExpiresIn=60
    )
    return url


async def put_signed_length(storage: Storage) -> bool | None:
    """A presigned PUT that signs Content-Length: refused with one byte more, stored with the right length."""
    key = probe_key(storage)
    try:
        url = await _presigned_put(storage, key, ContentLength=len(PROBE_BYTES))
        longer = await _send("PUT", url, content=PROBE_BYTES + b"!")
        exact = await _send("PUT", url, content=PROBE_BYTES)
    except (BotoCoreError, httpx.HTTPError) as exc:
        logger.warning("presigned PUT probe failed: %s", exc)
        return None
    finally:
        await _remove(storage, key)
    if not exact.is_success:
        return None
    return not longer.is_success


async def checksums_enforced(storage: Storage) -> bool | None:
    """A presigned PUT with a signed but wrong x-amz-checksum-sha256: refused (True) or stored (False)."""
    key = probe_key(storage)
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    try:
        url = await _presigned_put(storage, key, ChecksumSHA256=wrong)
        answer = await _send("PUT", url, content=PROBE_BYTES, headers={"x-amz-checksum-sha256": wrong})
    except (BotoCoreError, httpx.HTTPError) as exc:
        logger.warning("checksum probe failed: %s", exc)
        return None
    finally:
        await _remove(storage, key)
    return not answer.is_success


async def part_checksums_taken(storage: Storage) -> bool | None:
    """A multipart upload created with ChecksumAlgorithm=SHA256: accepted (True) or refused (False)."""
    key = probe_key(storage)
    try:
        upload_id, taken = await storage.create_multipart(
            key, "application/octet-stream", part_checksums=True
        )
    except StorageError as exc:
        logger.warning("part checksum probe failed: %s", exc.advice)
        return None
    with contextlib.suppress(StorageError):
        await storage.abort_multipart(key, upload_id)
    return taken


OTHER_ETAG = '"0123456789abcdef0123456789abcdef"'
Attempt = Callable[[Storage, str, str], Awaitable[object]]


async def _conditional(storage: Storage, name: str, attempt: Attempt) -> bool | None:
    """Write a record, then ``attempt`` a write that must fail its condition: refused (True) or applied (False)."""
    source, target = probe_key(storage), probe_key(storage)
    try:
        await storage.put_record(source, b"{}")
        try:
            await attempt(storage, source, target)
        except PreconditionFailed:
            return True
        return False
    except StorageError as exc:
        logger.warning("%s probe failed: %s", name, exc)
        return None
    finally:
        await _remove(storage, source, target)


async def if_none_match(storage: Storage) -> bool | None:
    """A second create-only write of one key: refused (True) or silently applied (False)."""

    async def again(storage: Storage, source: str, target: str) -> object:
        return await storage.put_record(source, b"{}")

    return await _conditional(storage, "If-None-Match", again)


async def if_match(storage: Storage) -> bool | None:
    """A replace at an ETag the object does not have: refused (True) or applied (False)."""

    async def replace(storage: Storage, source: str, target: str) -> object:
        return await storage.put_record(source, b"[]", if_match=OTHER_ETAG)

    return await _conditional(storage, "If-Match", replace)


async def copy_if_match(storage: Storage) -> bool | None:
    """A CopyObject whose CopySourceIfMatch names another ETag: refused (True) or copied (False)."""

    async def copy(storage: Storage, source: str, target: str) -> object:
        return await storage.copy_verified(source, OTHER_ETAG, target, "application/json", {})

    return await _conditional(storage, "CopySourceIfMatch", copy)


async def abort_rule_kept(storage: Storage) -> bool | None:
    """``bucket setup``'s lifecycle rule, read back: still aborting abandoned multipart uploads (True) or not."""
    try:
        found = await storage.s3.get_bucket_lifecycle_configuration(Bucket=storage.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        return False if code == "NoSuchLifecycleConfiguration" else None
    except BotoCoreError:
        return None
    ours = [rule for rule in found.get("Rules", []) if rule.get("ID") == RULE_ID]
    return bool(ours) and "AbortIncompleteMultipartUpload" in ours[0]


async def notifications(storage: Storage) -> bool | None:
    """Whether the store answers the bucket-notification API at all."""
    try:
        await storage.s3.get_bucket_notification_configuration(Bucket=storage.bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return False if status in NOT_IMPLEMENTED or status == 400 else None
    except BotoCoreError:
        return None
    return True


Probe = Callable[[Storage], Awaitable[bool | None]]

CHECKS: tuple[tuple[str, Probe, str, str, bool], ...] = (
    (
        "POST-policy uploads",
        post_uploads,
        "simple uploads by POST (auto)",
        "simple uploads by presigned PUT (auto)",
        False,
    ),
    (
        "presigned PUT with signed length",
        put_signed_length,
        "PUT uploads pinned to their declared size",
        "promotion alone refuses a wrong size (size_mismatch)",
        False,
    ),
    (
        "If-None-Match: * honoured",
        if_none_match,
        "one decision and one announcement per upload",
        "start-up refuses the store: announcements could repeat",
        True,
    ),
    (
        "If-Match honoured",
        if_match,
        "stalled announcements taken over by one replica",
        "two replicas could both deliver a stalled announcement",
        True,
    ),
    (
        "CopySourceIfMatch honoured",
        copy_if_match,
        "the library gets exactly the verified version",
        "promotion compares the copy's ETag instead",
        False,
    ),
    (
        "checksums enforced",
        checksums_enforced,
        "the store refuses a wrong SHA-256",
        "promotion alone refuses a wrong SHA-256 (checksum_mismatch)",
        False,
    ),
    (
        "multipart part checksums taken",
        part_checksums_taken,
        "parts are signed with their SHA-256 and named at completion",
        "uploads are created without them; promotion alone checks each part",
        False,
    ),
    (
        "abort-multipart lifecycle rule kept",
        abort_rule_kept,
        "abandoned multipart uploads are aborted by the store",
        "the sweeper aborts them (run `bucket setup`; MinIO: set its stale-upload expiry)",
        False,
    ),
    (
        "bucket notifications",
        notifications,
        "S3 events can promote uploads (SOUNDPOST_EVENTS_TOKEN)",
        "confirm and the sweeper promote uploads",
        False,
    ),
)


async def guarded(probe: Probe, storage: Storage) -> bool | None:
    """A probe's answer, or None when the store answered something no S3 should (logged, never raised)."""
    try:
        return await probe(storage)
    except Exception:  # a probe asks; an odd answer is "unknown", never a reason to fail
        # INFO, not WARNING: the table (or the method start-up keeps) already says "unknown".
        logger.info("the %s probe met an unexpected answer", probe.__name__, exc_info=True)
        return None


async def check(storage: Storage) -> list[Finding]:
    """Every probe, in order: the table ``soundpost bucket check`` prints."""
    return [
        Finding(name, await guarded(probe, storage), yes, no, needed)
        for name, probe, yes, no, needed in CHECKS
    ]


def table(findings: list[Finding]) -> str:
    """The findings as aligned text: behaviour, yes/no/unknown, what Soundpost does."""
    width = max(len(f.name) for f in findings)
    marks = {True: "yes", False: "NO", None: "unknown"}
    lines = [
        f"{f.name.ljust(width)}  {marks[f.supported].ljust(7)}  {f.consequence}"
        + ("  (needed)" if f.missing else "")
        for f in findings
    ]
    return "\n".join(lines)


async def settle_at_startup(storage: Storage) -> None:
    """The cheap part of the check: refuse a store that ignores create-only writes, pick POST or PUT.

    A store that cannot be asked (down, slow) changes nothing: the setting's choice
    stands (POST for auto) and /readyz reports the store.
    """
    try:
        await asyncio.wait_for(_settle(storage), STARTUP_CHECK_SECONDS)
    except StoreUnsuitable as exc:
        logger.error("cannot start: %s", exc)
        raise
    except TimeoutError:
        logger.warning(
            "the store did not answer the capability check in time; uploads go by %s", storage.upload_method
        )


async def _settle(storage: Storage) -> None:
    settings = storage.settings
    if await guarded(if_none_match, storage) is False:
        raise StoreUnsuitable(
            "the store ignores If-None-Match: * on PutObject, so two replicas could both announce one "
            "upload; use a store that honours conditional writes (see docs/deployment.md)"
        )
    if settings.upload_method == "put":
        storage.upload_method = "PUT"
    else:
        accepts_post = await guarded(post_uploads, storage)
        if accepts_post is False and settings.upload_method == "post":
            raise StoreUnsuitable(
                "SOUNDPOST_UPLOAD_METHOD=post, but the store refuses POST-policy uploads (501 or 405); "
                "set SOUNDPOST_UPLOAD_METHOD=auto or put"
            )
        storage.upload_method = "PUT" if accepts_post is False else "POST"
    logger.info(
        "simple uploads go by %s (SOUNDPOST_UPLOAD_METHOD=%s)", storage.upload_method, settings.upload_method
    )


async def bucket_check(settings: Settings, say: Callable[[str], None] = print) -> bool:
    """``soundpost bucket check``: print the table; True when the store has everything Soundpost needs."""
    async with open_storage(settings) as storage:
        findings = await check(storage)
    say(f"bucket {settings.s3_bucket} at {settings.s3_endpoint or 'AWS S3'}:")
    say(table(findings))
    missing = [f.name for f in findings if f.missing]
    if missing:
        say(f"missing what Soundpost needs: {', '.join(missing)}")
    return not missing
