"""The named budgets routes spend before they sign or call S3: what each counts, its default, its setting.

A route names its budget on its ``Spec``; ``service.http.ratelimit`` keeps the counts (in
memory, or in Redis shared by replicas). A per-user budget is spent before the
endpoint runs; the per-upload ``parts`` budget is spent by the part-signing routes,
one unit per signature, scaled by the number of parts the upload needs, together
with the per-user ``part_signatures``: the biggest allowed file signs at full speed,
and no user signs without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Budget:
    """One named rate limit: ``SOUNDPOST_{setting}`` overrides ``default`` (``limits`` notation)."""

    name: str
    default: str
    setting: str
    per: Literal["user", "upload"] = "user"
    counts: str = ""


UPLOADS = Budget(
    "uploads", "60/minute", "RATE_LIMIT", counts="new uploads: presigned POSTs and multipart uploads started"
)
PARTS = Budget(
    "parts",
    "5/hour",
    "PART_RATE_LIMIT",
    per="upload",
    counts="part signatures of one multipart upload, per part it needs (retries sign a part again)",
)
STORAGE = Budget(
    "storage",
    "300/minute",
    "STORAGE_RATE_LIMIT",
    counts="calls on existing uploads: listing, playback URLs, deletes, list parts, complete, abort",
)
PART_SIGNATURES = Budget(
    "part_signatures",
    "2000/minute",
    "PART_USER_RATE_LIMIT",
    counts="part signatures of all of one user's uploads together",
)
CONFIRM = Budget(
    "confirm", "60/minute", "CONFIRM_RATE_LIMIT", counts="confirmations (each reads and parses a file)"
)

BUDGETS = (UPLOADS, PARTS, PART_SIGNATURES, STORAGE, CONFIRM)
