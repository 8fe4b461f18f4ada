"""Per-user quota and pending uploads as reservations, so concurrent presigns and promotions never overshoot.

Every upload id moves through one entry of its owner's account:

- ``reserve`` (presign): the declared amount and a pending slot, refused when the
  slots are all taken or the amount does not fit beside what the library holds and
  what the other reservations promised. Expires after SOUNDPOST_RESERVATION_TTL.
- ``commit`` (promotion, before the copy): the verified amount enters ``used`` if it
  fits beside the library and the other reservations; the entry is "in flight" until
  ``copied``. Committing an id twice counts it once.
- ``release`` (a rejection, or a copy that did not happen): whatever the id holds is
  given back. ``removed`` (DELETE) takes a library file's amount off ``used``.

``used`` is seeded from the library (one LIST) the first time a promotion needs it,
and the sweeper's recount replaces it only when nothing changed during its LIST.
Each step is one atomic call: in this process here, a Lua script in Redis
(``service.limits.shared_reservations``) when replicas share SOUNDPOST_REDIS_URL.
An amount has bytes and seconds of audio, so a minutes quota checks the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, NamedTuple

from service.errors import ApiError
from service.settings import Settings

RETRY_AFTER_PENDING = "30"


class Amount(NamedTuple):
    """What an upload takes from a quota: bytes and seconds of audio (0 when not known yet)."""

    bytes: int = 0
    seconds: float = 0.0


class Quotas(NamedTuple):
    """Per-user limits; None is unlimited."""

    bytes: int | None = None
    seconds: float | None = None

    @property
    def any(self) -> bool:
        return self.bytes is not None or self.seconds is not None


def quotas_from(settings: Settings) -> Quotas:
    """The configured limits: bytes, and seconds of decoded audio."""
    return Quotas(bytes=settings.user_quota_bytes, seconds=settings.user_quota_seconds)


class Verdict(Enum):
    OK = "ok"
    OVER_BYTES = "bytes"
    OVER_SECONDS = "seconds"
    PENDING_FULL = "pending"
    NEEDS_SEED = "seed"  # the account's library total is unknown here: count it and call again


Kind = Literal["reserved", "copying", "done"]


@dataclass
class Entry:
    kind: Kind
    expires: float
    amount: Amount


@dataclass
class Account:
    used: Amount | None = None  # None: not counted since this store started
    changed: float = 0.0  # when ``used`` last moved, for the recount's check
    entries: dict[str, Entry] = field(default_factory=dict)  # by upload id


def over(quotas: Quotas, used: Amount, promised: Amount, amount: Amount) -> Verdict:
    """Whether ``amount`` fits beside ``used`` and ``promised``; a zero amount needs any room at all."""
    for measure, limit in (("bytes", quotas.bytes), ("seconds", quotas.seconds)):
        if limit is None:
            continue
        index = 0 if measure == "bytes" else 1
        taken = used[index] + promised[index]
        if (taken + amount[index] > limit) if amount[index] else (taken >= limit):
            return Verdict.OVER_BYTES if index == 0 else Verdict.OVER_SECONDS
    return Verdict.OK


def total(amounts: list[Amount]) -> Amount:
    return Amount(sum(a.bytes for a in amounts), sum(a.seconds for a in amounts))


class Reservations:
    """The ledger's operations, as routes and promotion call them; subclasses keep the accounts."""

    def __init__(self, settings: Settings) -> None:
        self.quotas = quotas_from(settings)
        self.max_pending = settings.max_pending_uploads  # 0: no cap
        # Nothing to count without a quota or a cap: presign and promotion then never ask the ledger.
        self.active = self.quotas.any or self.max_pending > 0
        self.ttl = float(settings.reservation_seconds)

    async def reserve(self, owner: str, upload_id: str, amount: Amount) -> Verdict:
        raise NotImplementedError

    async def commit(
        self, owner: str, upload_id: str, amount: Amount, hold: float, seed: Amount | None = None
    ) -> Verdict:
        raise NotImplementedError

    async def copied(self, owner: str, upload_id: str, hold: float) -> None:
        raise NotImplementedError

    async def release(self, owner: str, upload_id: str) -> None:
        raise NotImplementedError

    async def removed(self, owner: str, amount: Amount) -> None:
        raise NotImplementedError

    async def recount(self, owner: str, library_bytes: int, since: float) -> bool:
        raise NotImplementedError

    async def used(self, owner: str) -> Amount | None:
        """What the user's library takes, as last counted here; None when not counted since start-up."""
        raise NotImplementedError

    async def close(self) -> None:
        pass

    async def admit(self, owner: str, upload_id: str, declared: int | None, path: str = "$.size") -> None:
        """Presign's check: reserve the declared bytes and a slot, or refuse with 413 or 429."""
        if not self.active:
            return
        verdict = await self.reserve(owner, upload_id, Amount(declared or 0))
        if verdict is Verdict.PENDING_FULL:
            raise ApiError(
                429,
                "too_many_pending_uploads",
                f"{self.max_pending} of your uploads are waiting to be verified; try again once they are.",
                headers={"Retry-After": RETRY_AFTER_PENDING},
            )
        if verdict is not Verdict.OK:
            raise ApiError(
                413,
                "quota_exceeded",
                f"Your uploads may take at most {self.quotas.bytes} bytes; delete some to make room.",
                path,
            )

    async def settle(
        self,
        owner: str,
        upload_id: str,
        amount: Amount,
        hold: float,
        library: Callable[[], Awaitable[Amount]],
    ) -> Verdict:
        """Promotion's check: commit, counting the library first when this store has not yet."""
        if not self.active:
            return Verdict.OK
        verdict = await self.commit(owner, upload_id, amount, hold)
        if verdict is Verdict.NEEDS_SEED:
            verdict = await self.commit(owner, upload_id, amount, hold, await library())
        return verdict


class MemoryReservations(Reservations):
    """The ledger in this process: exact for one replica, which is all it serves."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        self.clock = clock
        self.accounts: dict[str, Account] = {}

    def account(self, owner: str) -> Account:
        account = self.accounts.setdefault(owner, Account())
        now = self.clock()
        for upload_id in [i for i, e in account.entries.items() if e.expires <= now]:
            del account.entries[upload_id]
        return account

    async def used(self, owner: str) -> Amount | None:
        return self.account(owner).used

    def promised(self, account: Account, besides: str) -> Amount:
        return total([e.amount for i, e in account.entries.items() if e.kind == "reserved" and i != besides])

    async def reserve(self, owner: str, upload_id: str, amount: Amount) -> Verdict:
        account = self.account(owner)
        if upload_id in account.entries:
            return Verdict.OK
        if (
            self.max_pending
            and sum(e.kind == "reserved" for e in account.entries.values()) >= self.max_pending
        ):
            return Verdict.PENDING_FULL
        verdict = over(self.quotas, account.used or Amount(), self.promised(account, upload_id), amount)
        if verdict is Verdict.OK:
            account.entries[upload_id] = Entry("reserved", self.clock() + self.ttl, amount)
        return verdict

    async def commit(
        self, owner: str, upload_id: str, amount: Amount, hold: float, seed: Amount | None = None
    ) -> Verdict:
        account = self.account(owner)
        entry = account.entries.get(upload_id)
        if entry is not None and entry.kind != "reserved":
            return Verdict.OK
        if account.used is None and self.quotas.any:
            if seed is None:
                return Verdict.NEEDS_SEED
            account.used = seed
        used = account.used or Amount()
        verdict = over(self.quotas, used, self.promised(account, upload_id), amount)
        if verdict is not Verdict.OK:
            account.entries.pop(upload_id, None)
            return verdict
        if account.used is not None:
            account.used = Amount(used.bytes + amount.bytes, used.seconds + amount.seconds)
        account.changed = self.clock()
        account.entries[upload_id] = Entry("copying", self.clock() + hold, amount)
        return Verdict.OK

    async def copied(self, owner: str, upload_id: str, hold: float) -> None:
        account = self.account(owner)
        entry = account.entries.get(upload_id)
        if entry is not None and entry.kind == "copying":
            account.entries[upload_id] = Entry("done", self.clock() + hold, entry.amount)
            account.changed = self.clock()

    async def release(self, owner: str, upload_id: str) -> None:
        account = self.account(owner)
        entry = account.entries.get(upload_id)
        if entry is None or entry.kind == "done":
            return
        del account.entries[upload_id]
        if entry.kind == "copying":
            await self.removed(owner, entry.amount)

    async def removed(self, owner: str, amount: Amount) -> None:
        account = self.account(owner)
        if account.used is not None:
            used = account.used
            account.used = Amount(max(0, used.bytes - amount.bytes), max(0.0, used.seconds - amount.seconds))
        account.changed = self.clock()

    async def recount(self, owner: str, library_bytes: int, since: float) -> bool:
        account = self.account(owner)
        if account.used is None or account.changed >= since:
            return False  # not counted yet (promotion seeds it), or it moved during the LIST
        if any(e.kind == "copying" for e in account.entries.values()):
            return False  # a copy in flight is counted here but may be missing from the LIST
        account.used = Amount(library_bytes, account.used.seconds)
        return True
