"""Whether S3 event pushes still arrive: an upload the sweeper had to promote is one a push missed.

With SOUNDPOST_EVENTS_TOKEN set, the store pushes an event for every upload and
the events route promotes it at once; the sweeper only finds staging objects
older than SOUNDPOST_STAGING_GRACE that nobody promoted. So every upload the
sweeper decides while events are on is a push that never came (radosgw 16.2 stops
pushing after one failed push until it restarts, and a deleted topic or
notification sends nothing). The sweeper reports each pass here; readiness and
/metrics read it, and the warning names the fix.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

logger = logging.getLogger("soundpost.events")

MISSED = Counter(
    "soundpost_event_pushes_missed",
    "Uploads the sweeper decided although S3 events are on: pushes that never came",
)
FIX = (
    "restart radosgw (it stops pushing after a failed push), then re-run `soundpost bucket setup` "
    "to restore the topic and notification"
)


class PushHealth:
    """What the last sweep pass in this process found: how many uploads no push had decided."""

    def __init__(self) -> None:
        self.missed = 0

    def after_sweep(self, events_on: bool, decided: int) -> None:
        """Count and warn about the uploads a pass decided that events should have (only with events on)."""
        if not events_on:
            return
        self.missed = decided
        if decided:
            MISSED.inc(decided)
            logger.warning(
                "S3 event pushes are not arriving: the sweeper promoted %d upload(s) that no event promoted "
                "within SOUNDPOST_STAGING_GRACE; %s",
                decided,
                FIX,
            )

    def check(self, events_on: bool) -> str | None:
        """Readiness detail: None without events, "ok", or how many the last pass found and the fix."""
        if not events_on:
            return None
        if not self.missed:
            return "ok"
        return f"missed ({self.missed} upload(s) promoted by the sweeper, not by an event: {FIX})"


PUSHES = PushHealth()  # one per process, as the sweeper and /readyz are
