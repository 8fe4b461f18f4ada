"""``soundpost bucket setup``: what the bucket needs, applied idempotently, and said aloud.

Three things, each compared with what the bucket already has and changed only
where it differs, leaving every rule and notification that is not ours alone:

- CORS for the public origin (and trusted origins), so the page can POST and play
  back. MinIO community has no bucket CORS; it is reported, not fatal.
- A lifecycle rule on the staging prefix only: staging objects expire, and
  incomplete multipart uploads are aborted, after the staging lifetime. It is the
  backstop for when no sweeper runs; nothing touches the library prefix.
- When ``SOUNDPOST_EVENTS_TOKEN`` is set: a persistent topic whose push endpoint is
  the events route (radosgw's SNS-compatible API, on the S3 endpoint and keys),
  and a bucket notification for ``s3:ObjectCreated:*`` under the staging prefix.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from service.core import keys
from service.settings import Settings
from service.storage.client import aioboto3_session, client_config

RULE_ID = "soundpost-staging"
NOTIFICATION_ID = "soundpost-staging"
DAY = 86400
CREATED_EVENTS = ["s3:ObjectCreated:*"]

Say = Callable[[str], None]


class SetupError(Exception):
    """The store refused a step; the message names the step and the setting to look at."""


def lifecycle_days(seconds: int) -> int:
    """Lifecycle rules count whole days: the lifetime rounded up, so the rule never acts before the sweeper would."""
    return max(1, math.ceil(seconds / DAY))


def cors_rule(origins: list[str]) -> dict[str, Any]:
    """The rule that lets the page on these origins POST uploads, PUT parts and play objects back."""
    return {
        "AllowedOrigins": origins,
        "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag", "Location"],
        "MaxAgeSeconds": 600,
    }


def staging_rule(settings: Settings) -> dict[str, Any]:
    """Expire staging and abort its multipart uploads: the backstop for uploads no sweeper finishes."""
    days = lifecycle_days(settings.staging_lifetime)
    return {
        "ID": RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": keys.area_prefix(settings.s3_key_prefix, keys.STAGING)},
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }


def topic_name(bucket: str) -> str:
    """One topic per bucket; topic names allow letters, digits, - and _ (bucket names may hold dots)."""
    return "soundpost-" + re.sub(r"[^A-Za-z0-9_-]", "-", bucket)


def masked(url: str) -> str:
    """A push URL fit to print: the token replaced."""
    return re.sub(r"token=[^&]*", "token=***", url)


def _same_rule(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the store's copy of a rule says what ours says (stores add fields, and reorder lists)."""
    return all(_same(found.get(field), value) for field, value in wanted.items())


def _same(found: Any, wanted: Any) -> bool:
    """Equal, lists of names in any order."""
    if isinstance(wanted, list) and isinstance(found, list) and all(isinstance(v, str) for v in wanted):
        return sorted(found) == sorted(wanted)
    return bool(found == wanted)


def _code(exc: ClientError) -> str | None:
    """The store's error code (``NoSuchBucket``, ``AccessDenied``...)."""
    code = exc.response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def _refused(step: str, exc: ClientError | BotoCoreError, hint: str) -> SetupError:
    if isinstance(exc, ClientError):
        why = f"{_code(exc) or 'error'}: {exc.response.get('Error', {}).get('Message') or 'no message'}"
    else:
        why = type(exc).__name__
    return SetupError(f"{step}: the store refused ({why}). {hint}")


class BucketSetup:
    """The steps, on open S3 and SNS clients for the configured endpoint and keys."""

    def __init__(self, settings: Settings, s3: Any, sns: Any, say: Say, *, events: bool = True) -> None:
        self.settings = settings
        self.events = events
        self.bucket = settings.s3_bucket
        self.s3 = s3
        self.sns = sns
        self.say = say

    async def cors(self) -> None:
        """The page's rule, unless the bucket already has it (MinIO community has none: said, not fatal)."""
        origins = [self.settings.public_origin, *self.settings.trusted_origins]
        wanted = cors_rule(origins)
        try:
            found = (await self.s3.get_bucket_cors(Bucket=self.bucket)).get("CORSRules", [])
        except ClientError as exc:
            code = _code(exc)
            if code in ("NotImplemented", "NotSupported"):
                self.say(
                    "cors: this store has no bucket CORS (MinIO community: set MINIO_API_CORS_ALLOW_ORIGIN "
                    f"to {', '.join(origins)} instead)"
                )
                return
            if code != "NoSuchCORSConfiguration":
                raise _refused("cors", exc, "Check SOUNDPOST_S3_BUCKET and the keys' permissions.") from None
            found = []
        if any(_same_rule(rule, wanted) for rule in found):
            self.say(f"cors: unchanged (origins {', '.join(origins)})")
            return
        try:
            await self.s3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [wanted]})
        except ClientError as exc:
            raise _refused("cors", exc, "Check SOUNDPOST_PUBLIC_URL and SOUNDPOST_TRUSTED_ORIGINS.") from None
        self.say(f"cors: {'replaced' if found else 'set'} (origins {', '.join(origins)})")

    async def lifecycle(self) -> None:
        """Our rule by its ID, next to whatever rules the bucket already has."""
        wanted = staging_rule(self.settings)
        try:
            found = (await self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)).get("Rules", [])
        except ClientError as exc:
            if _code(exc) != "NoSuchLifecycleConfiguration":
                raise _refused(
                    "lifecycle", exc, "Check SOUNDPOST_S3_BUCKET and the keys' permissions."
                ) from None
            found = []
        ours = [rule for rule in found if rule.get("ID") == RULE_ID]
        days = wanted["Expiration"]["Days"]
        what = (
            f"{wanted['Filter']['Prefix']} expires after {days} day{'s' * (days != 1)} "
            f"(SOUNDPOST_STAGING_LIFETIME={self.settings.staging_lifetime}s, rounded up to whole days), "
            "and so do its incomplete multipart uploads"
        )
        if len(ours) == 1 and _same_rule(ours[0], wanted):
            self.say(f"lifecycle rule {RULE_ID}: unchanged ({what})")
            return
        rules = [rule for rule in found if rule.get("ID") != RULE_ID] + [wanted]
        try:
            await self.s3.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
            )
        except ClientError as exc:
            raise _refused(
                "lifecycle", exc, "Check SOUNDPOST_S3_KEY_PREFIX and the keys' permissions."
            ) from None
        self.say(f"lifecycle rule {RULE_ID}: {'updated' if ours else 'added'} ({what})")
        await self.abort_rule_kept()

    async def abort_rule_kept(self) -> None:
        """Read the rule back: MinIO accepts AbortIncompleteMultipartUpload and silently drops it (minio#19115)."""
        with contextlib.suppress(ClientError):
            kept = (await self.s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)).get("Rules", [])
            if not any(r.get("ID") == RULE_ID and "AbortIncompleteMultipartUpload" in r for r in kept):
                self.say(
                    f"lifecycle rule {RULE_ID}: the store dropped its abort-incomplete-multipart part "
                    "(MinIO does); set MinIO's own MINIO_API_STALE_UPLOADS_EXPIRY (docs/deployment.md), "
                    "and the sweeper aborts abandoned uploads meanwhile"
                )

    async def topic(self, push_url: str) -> str:
        """The topic's ARN, created or pointed at ``push_url`` as needed."""
        name = topic_name(self.bucket)
        hint = (
            "Bucket notifications need radosgw's SNS-compatible API at SOUNDPOST_S3_ENDPOINT; on MinIO run "
            "with --no-events and configure its webhook target (docs/operations.md, S3 event notifications)."
        )
        try:
            listed = (await self.sns.list_topics()).get("Topics", [])
            arn = next((t["TopicArn"] for t in listed if t["TopicArn"].rsplit(":", 1)[-1] == name), None)
            if arn is not None:
                endpoint = json.loads(
                    (await self.sns.get_topic_attributes(TopicArn=arn))["Attributes"]["EndPoint"]
                )
                if endpoint.get("EndpointAddress") == push_url and endpoint.get("Persistent") == "true":
                    self.say(f"topic {name}: unchanged (pushes to {masked(push_url)})")
                    return str(arn)
            created = await self.sns.create_topic(
                Name=name, Attributes={"push-endpoint": push_url, "persistent": "true"}
            )
        except (ClientError, BotoCoreError, KeyError, ValueError) as exc:
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise _refused("topic", exc, hint) from None
            raise SetupError(f"topic: the store's answer is not radosgw's ({exc!r}). {hint}") from None
        self.say(f"topic {name}: {'updated' if arn else 'created'} (pushes to {masked(push_url)})")
        return str(created["TopicArn"])

    async def notification(self, topic_arn: str) -> None:
        """Our topic configuration by its ID, keeping the bucket's other notifications."""
        prefix = keys.area_prefix(self.settings.s3_key_prefix, keys.STAGING)
        wanted = {
            "Id": NOTIFICATION_ID,
            "TopicArn": topic_arn,
            "Events": CREATED_EVENTS,
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
        }
        try:
            found = await self.s3.get_bucket_notification_configuration(Bucket=self.bucket)
        except ClientError as exc:
            raise _refused(
                "notification", exc, "Check SOUNDPOST_S3_BUCKET and the keys' permissions."
            ) from None
        found.pop("ResponseMetadata", None)
        topics = found.get("TopicConfigurations", [])
        ours = [t for t in topics if t.get("Id") == NOTIFICATION_ID]
        what = f"s3:ObjectCreated:* under {prefix}"
        if len(ours) == 1 and _same_rule(ours[0], wanted):
            self.say(f"notification {NOTIFICATION_ID}: unchanged ({what})")
            return
        config = {
            **found,
            "TopicConfigurations": [t for t in topics if t.get("Id") != NOTIFICATION_ID] + [wanted],
        }
        try:
            await self.s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration=config
            )
        except ClientError as exc:
            raise _refused(
                "notification", exc, "Check SOUNDPOST_S3_KEY_PREFIX and the keys' permissions."
            ) from None
        self.say(f"notification {NOTIFICATION_ID}: {'updated' if ours else 'added'} ({what})")

    async def run(self) -> None:
        """Every step in order; an impossible events setup is refused before anything changes."""
        push_url = self.settings.events_push_url if self.events else None
        if push_url is not None and self.settings.s3_endpoint is None:  # refused before anything changes
            raise SetupError(
                "events: SOUNDPOST_EVENTS_TOKEN is set, but on AWS S3 notifications go through SNS, whose "
                "HTTPS subscriptions the events route does not accept; unset it and run the sweeper "
                "(SOUNDPOST_SWEEP_INTERVAL or `soundpost sweep`)."
            )
        self.say(f"bucket {self.bucket} at {self.settings.s3_endpoint or 'AWS S3'}:")
        await self.cors()
        await self.lifecycle()
        if not self.events:
            self.say("events: left as they are (--no-events); the store's own notification target sends them")
            return
        if push_url is None:
            self.say(
                "events: off (SOUNDPOST_EVENTS_TOKEN is not set); confirm and the sweeper promote uploads"
            )
            return
        await self.notification(await self.topic(push_url))


async def setup(settings: Settings, say: Say = print, *, events: bool = True) -> None:
    """Apply every step to the configured bucket (the notification ones unless ``events`` is False).

    Raises ``SetupError`` naming what to fix.
    """
    session = aioboto3_session(settings)
    config = client_config(settings)
    try:
        async with (
            session.client("s3", endpoint_url=settings.s3_endpoint, config=config) as s3,
            session.client("sns", endpoint_url=settings.s3_endpoint, config=config) as sns,
        ):
            await BucketSetup(settings, s3, sns, say, events=events).run()
    except BotoCoreError as exc:  # no connection, no credentials: before any step could answer
        raise SetupError(
            f"the store cannot be reached ({type(exc).__name__}: {exc}). Check SOUNDPOST_S3_ENDPOINT "
            "and SOUNDPOST_S3_ACCESS_KEY_ID / SOUNDPOST_S3_SECRET_ACCESS_KEY."
        ) from None
