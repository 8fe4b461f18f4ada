"""Signed completion webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).

Delivery is at-least-once, by whoever holds the lease in the upload id's record
(``service.lifecycle.promotion``; after a confirm, in a background task, so the
answer never waits for the receiver): retries with backoff inside a bounded time,
and if the receiver never answers 2xx the announcement is queued in the outbox and
the sweeper delivers it later under the same webhook-id, so receivers dedupe and
nothing is lost. Signing is the ``standardwebhooks`` reference library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx2 as httpx
from standardwebhooks import Webhook

from service.settings import Settings

logger = logging.getLogger("soundpost.webhooks")

# Waits between attempts; the overall time bound cuts the schedule short.
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)


def signed_headers(signer: Webhook, message_id: str, body: str, now: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(message_id, now, body),
    }


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient, url: str, secret: str, time_limit: float) -> None:
        self.client = client
        self.url = url
        self.signer = Webhook(secret)
        self.time_limit = time_limit

    async def attempt(self, message_id: str, body: str) -> bool:
        headers = signed_headers(self.signer, message_id, body, datetime.now(UTC))
        try:
            answer = await self.client.post(self.url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            logger.warning("webhook %s not delivered: %s", message_id, type(exc).__name__)
            return False
        except Exception:  # the client's own failure (seen: a socket closed mid-connect): retried like one
            logger.exception("webhook %s not delivered: the HTTP client failed", message_id)
            return False
        if answer.is_success:
            return True
        logger.warning("webhook %s refused with %s", message_id, answer.status_code)
        return False

    async def deliver(self, message_id: str, body: str) -> bool:
        """POST the signed body until the receiver answers 2xx; False once the time bound is spent."""
        try:
            async with asyncio.timeout(self.time_limit):
                for wait in (*BACKOFF_SECONDS, None):
                    if await self.attempt(message_id, body):
                        return True
                    if wait is None:
                        return False
                    await asyncio.sleep(wait)
        except TimeoutError:
            logger.warning("webhook %s not acknowledged within %ss", message_id, self.time_limit)
        return False


@contextlib.asynccontextmanager
async def open_webhooks(settings: Settings) -> AsyncIterator[WebhookSender | None]:
    """One HTTP client for the life of the process, when a webhook is configured."""
    if not settings.webhook_url or settings.webhook_secret is None:
        yield None
        return
    timeout = httpx.Timeout(settings.webhook_timeout, connect=min(3.0, settings.webhook_timeout))
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        yield WebhookSender(
            client, settings.webhook_url, str(settings.webhook_secret), settings.webhook_timeout
        )
