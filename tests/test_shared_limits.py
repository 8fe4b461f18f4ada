"""Quota and pending uploads hold exactly across two replicas sharing Redis, whatever the concurrency."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from service import devstack
from service.core import keys
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in

DATA = audio_samples.wav(1.0)
# Five files fit, a sixth does not: "exactly" means the library ends at five files' bytes.
QUOTA = 5 * len(DATA) + len(DATA) // 2


@dataclass
class Alice:
    """Alice signed in once, with a browser's client on each replica."""

    on_a: httpx.Client
    on_b: httpx.Client
    a: devstack.ServeProcess
    b: devstack.ServeProcess

    def by_turns(self, i: int) -> httpx.Client:
        return self.on_a if i % 2 == 0 else self.on_b


@contextlib.contextmanager
def alice_on_two_replicas(env: dict[str, str]) -> Iterator[Alice]:
    port_a = devstack.free_port()
    public_url = f"http://127.0.0.1:{port_a}"
    settings = {**env, "SOUNDPOST_PUBLIC_URL": public_url}
    headers = {"Origin": public_url, "Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
    with (
        devstack.soundpost_serve(settings, port_a) as a,
        devstack.soundpost_serve(settings) as b,
        httpx.Client(base_url=a.url, headers=headers, timeout=30) as on_a,
    ):
        assert sign_in(on_a, "fake", "alice").status_code == 303
        with httpx.Client(base_url=b.url, headers=headers, cookies=on_a.cookies, timeout=30) as on_b:
            yield Alice(on_a, on_b, a, b)


@pytest.fixture
def shared(app_env: dict[str, str], redis_url: str) -> dict[str, str]:
    """Settings for replicas sharing one Redis, with budgets far above what the tests spend."""
    return {**app_env, "SOUNDPOST_REDIS_URL": redis_url, "SOUNDPOST_RATE_LIMIT": "1000/minute"}


def presign(client: httpx.Client, name: str, size: int | None) -> httpx.Response:
    body: dict[str, object] = {"filename": name, "contentType": "audio/wav"}
    if size is not None:
        body["size"] = size
    return client.post("/api/upload/presigned-url", json=body)


def upload_id(key: str) -> str:
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None
    return parsed[1]


def at_once(count: int, call: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_concurrent_presigns_on_two_replicas_reserve_exactly_the_quota(shared: dict[str, str]) -> None:
    """Sixteen presigns of one file's size at once, half on each replica: five fit, eleven are 413."""
    env = {**shared, "SOUNDPOST_USER_QUOTA_BYTES": str(QUOTA)}
    with alice_on_two_replicas(env) as alice:
        answers = at_once(16, lambda i: presign(alice.by_turns(i), f"{i}.wav", len(DATA)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 5 + [413] * 11, [a.text for a in answers if a.status_code not in (200, 413)]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 413} == {"quota_exceeded"}


def test_concurrent_presigns_on_two_replicas_take_exactly_the_pending_slots(shared: dict[str, str]) -> None:
    """SOUNDPOST_MAX_PENDING_UPLOADS=5: of sixteen presigns at once (POST, Uppy and multipart), five are signed."""
    env = {**shared, "SOUNDPOST_MAX_PENDING_UPLOADS": "5"}

    def one(i: int) -> httpx.Response:
        client = alice.by_turns(i)
        if i % 3 == 0:
            return uppy.params(client, f"{i}.wav", "audio/wav", len(DATA))
        if i % 3 == 1:
            return client.post(
                "/s3/multipart", json={"filename": f"{i}.wav", "type": "audio/wav", "metadata": {}}
            )
        return presign(client, f"{i}.wav", None)

    with alice_on_two_replicas(env) as alice:
        answers = at_once(16, one)
    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 11
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {
        "too_many_pending_uploads"
    }


def test_concurrent_confirms_on_two_replicas_fill_the_library_to_the_quota_exactly(
    shared: dict[str, str],
) -> None:
    """Sixteen uploads without a declared size (each admitted while there is room), confirmed at once on
    both replicas: five are promoted, eleven refused and deleted, and the library holds five files."""
    env = {**shared, "SOUNDPOST_USER_QUOTA_BYTES": str(QUOTA)}
    with alice_on_two_replicas(env) as alice:
        signed = at_once(16, lambda i: presign(alice.by_turns(i), f"{i}.wav", None))
        assert [s.status_code for s in signed] == [200] * 16, [s.text for s in signed]
        stored = at_once(16, lambda i: uppy.post_form(signed[i].json(), f"{i}.wav", DATA, "audio/wav"))
        assert [s.status_code for s in stored] == [201] * 16
        ids = [upload_id(s.json()["key"]) for s in signed]
        confirms = at_once(16, lambda i: alice.by_turns(i + 1).post(f"/api/uploads/{ids[i]}/confirm"))
        listed = alice.on_a.get("/api/uploads").json()["uploads"]
        late = presign(alice.on_b, "late.wav", len(DATA))
    assert sorted(c.status_code for c in confirms) == [200] * 5 + [413] * 11, [c.text for c in confirms]
    assert {c.json()["error"]["code"] for c in confirms if c.status_code == 413} == {"quota_exceeded"}
    assert [u["status"] for u in listed] == ["verified"] * 5
    assert sum(u["size"] for u in listed) == 5 * len(DATA) <= QUOTA
    assert late.status_code == 413  # half a file's room is left


def test_the_reservations_of_a_killed_replica_expire(shared: dict[str, str]) -> None:
    """Replica A presigns up to the pending cap and is killed; B refuses until A's reservations expire."""
    env = {**shared, "SOUNDPOST_MAX_PENDING_UPLOADS": "2", "SOUNDPOST_RESERVATION_TTL": "10"}
    with alice_on_two_replicas(env) as alice:
        assert [presign(alice.on_a, f"{i}.wav", len(DATA)).status_code for i in range(2)] == [200, 200]
        alice.a.process.kill()
        alice.a.process.wait()
        assert presign(alice.on_b, "b.wav", len(DATA)).status_code == 429
        answers = []
        for _ in range(60):
            answers.append(presign(alice.on_b, "b.wav", len(DATA)).status_code)
            if answers[-1] == 200:
                break
            time.sleep(0.5)
    assert answers[-1] == 200
    assert set(answers[:-1]) <= {429}
