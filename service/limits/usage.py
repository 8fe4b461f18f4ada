"""Per-user limits at presign: storage quota and unverified uploads, from a per-process cache.

Presign is the hot path, so it never asks S3: it reads what this process last
counted. Library bytes are counted by promotion (authoritatively, before it
admits a file) and by the sweeper for everyone; unverified uploads sitting in
staging are counted by the sweeper and by the user's own listing. The cache can
lag behind another replica; promotion's quota check is the one that holds.
"""

from __future__ import annotations

from service.errors import ApiError
from service.settings import Settings


class Usage:
    """Library bytes and staging objects per user, as this process last counted them."""

    def __init__(self, settings: Settings) -> None:
        self.quota = settings.user_quota_bytes
        self.max_pending = settings.max_pending_uploads
        self.used_bytes: dict[str, int] = {}
        self.pending_counts: dict[str, int] = {}

    def used(self, owner: str) -> int:
        return self.used_bytes.get(owner, 0)

    def fits(self, owner: str, declared: int | None) -> bool:
        """Whether a file of the declared size (unknown: any at all) still fits the user's quota."""
        if self.quota is None:
            return True
        used = self.used_bytes.get(owner, 0)
        return used + declared <= self.quota if declared else used < self.quota

    def admit(self, owner: str, declared: int | None, path: str = "$.size") -> None:
        """Refuse a new upload that would not fit, or one more while too many wait to be verified."""
        if not self.fits(owner, declared):
            raise ApiError(
                413,
                "quota_exceeded",
                f"Your uploads may take at most {self.quota} bytes; delete some to make room.",
                path,
            )
        if self.pending_counts.get(owner, 0) >= self.max_pending:
            raise ApiError(
                429,
                "too_many_pending_uploads",
                f"{self.max_pending} of your uploads are waiting to be verified; try again once they are.",
                headers={"Retry-After": "30"},
            )

    def settled(self, owner: str) -> None:
        """One of the user's staging objects was promoted or refused."""
        if self.pending_counts.get(owner):
            self.pending_counts[owner] -= 1

    def promoted(self, owner: str, size: int) -> None:
        self.used_bytes[owner] = self.used_bytes.get(owner, 0) + size

    def removed(self, owner: str, size: int) -> None:
        self.used_bytes[owner] = max(0, self.used_bytes.get(owner, 0) - size)

    def recounted(self, owner: str, total: int) -> None:
        self.used_bytes[owner] = total

    def pending_counted(self, owner: str, count: int) -> None:
        self.pending_counts[owner] = count

    def replace_counts(self, totals: dict[str, int], pending: dict[str, int]) -> None:
        """The sweeper's full recount: users it did not see hold nothing."""
        self.used_bytes = dict(totals)
        self.pending_counts = dict(pending)
