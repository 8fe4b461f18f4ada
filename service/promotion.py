"""Promotion: verify a staging object and copy it into the library, once, whoever asks.

Interface (first commit; the body follows in the next commits):

- ``await promote_staged(resources, key) -> Promotion``: a staging key, as an S3
  event names it. Keys that are not staging keys of this service give
  ``Promotion(outcome="ignored")`` and touch nothing.
- ``await promote_upload(resources, owner, upload_id) -> Promotion``: what the
  confirm route calls (the user's own id and an upload id).
- ``await sweep(resources) -> SweepReport``: one pass of the sweeper.

``resources`` is ``service.resources.Resources`` (settings, storage, webhooks...).
All three ways in run the same idempotent steps; concurrent runs converge on one
library object and one announcement per upload id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.errors import ApiError
from service.schemas import Upload

Outcome = Literal["promoted", "rejected", "replaced", "missing", "ignored", "pending"]


@dataclass(frozen=True)
class Promotion:
    """What one promotion attempt found or did.

    - ``promoted``: the upload is in the library (``upload`` describes it), now or before.
    - ``rejected``: the upload failed its checks and was deleted (``error`` says why).
    - ``replaced``: the staging object reused an id that was already decided; it was deleted.
    - ``missing``: nothing under that id (never uploaded, deleted, or not the caller's).
    - ``pending``: another replica is promoting it right now; ask again shortly.
    - ``ignored``: not a staging key of this service.
    """

    outcome: Outcome
    upload: Upload | None = None
    error: ApiError | None = None
    announced: bool = False
