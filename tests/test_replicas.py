"""Two `soundpost serve` processes with the same settings behave as one service behind a load balancer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from service import devstack
from service.core import keys
from tests.support import audio_samples, uppy
from tests.support.flows import approve_at_idp, follow_callback, sign_in, start_login


@dataclass
class Replicas:
    """Replica A and replica B, and the public URL both are configured with (the load balancer's)."""

    a: devstack.ServeProcess
    b: devstack.ServeProcess
    public_url: str

    def browser(self, replica: devstack.ServeProcess, cookies: httpx.Cookies | None = None) -> httpx.Client:
        """A browser's requests as the load balancer hands them to one replica: the page's origin, its cookies."""
        headers = {"Origin": self.public_url, "Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
        return httpx.Client(
            base_url=replica.url, headers=headers, cookies=cookies, follow_redirects=False, timeout=30
        )


@pytest.fixture
def replicas(app_env: dict[str, str]) -> Iterator[Replicas]:
    """Two processes, one set of SOUNDPOST_* settings (one secret, one public URL), wired to moto and the IdP."""
    port_a = devstack.free_port()
    public_url = f"http://127.0.0.1:{port_a}"  # A stands where the load balancer would; B is reached directly
    env = {**app_env, "SOUNDPOST_PUBLIC_URL": public_url}
    with devstack.soundpost_serve(env, port_a) as a, devstack.soundpost_serve(env) as b:
        yield Replicas(a, b, public_url)


def test_a_session_cookie_from_one_replica_is_accepted_by_the_other(replicas: Replicas) -> None:
    """Sign in on A; B knows the user from the cookie alone, and without the cookie B does not."""
    with replicas.browser(replicas.a) as on_a:
        assert sign_in(on_a, "fake", "alice").status_code == 303
        with replicas.browser(replicas.b, on_a.cookies) as on_b, replicas.browser(replicas.b) as stranger:
            me = on_b.get("/api/me")
            assert me.status_code == 200
            assert "server" not in me.headers  # `soundpost serve` does not name its software
            assert (me.json()["subject"], me.json()["email"]) == ("alice", "alice@example.com")
            assert stranger.get("/api/me").status_code == 401


def test_a_sign_in_started_on_one_replica_finishes_on_the_other(replicas: Replicas) -> None:
    """State, nonce and PKCE verifier travel in the signed cookie, so B completes the flow A began."""
    with replicas.browser(replicas.a) as on_a:
        login = start_login(on_a, "?provider=fake")
        assert login.status_code == 302
        callback = approve_at_idp(login.headers["location"], "bob")
        assert callback.startswith(f"{replicas.public_url}/auth/callback/fake?")
        with replicas.browser(replicas.b, on_a.cookies) as on_b:
            finished = follow_callback(on_b, callback)
            assert finished.status_code == 303, finished.text
            assert on_b.get("/api/me").json()["subject"] == "bob"


def test_an_upload_presigned_by_one_replica_confirms_on_the_other(replicas: Replicas) -> None:
    """Presign on A, POST the file to the S3 stand-in, confirm and list on B."""
    data = audio_samples.wav(1.5)
    with contextlib.ExitStack() as stack:
        on_a = stack.enter_context(replicas.browser(replicas.a))
        assert sign_in(on_a, "fake", "alice").status_code == 303
        on_b = stack.enter_context(replicas.browser(replicas.b, on_a.cookies))

        signed = on_a.post(
            "/api/upload/presigned-url", json={"filename": "take.wav", "contentType": "audio/wav"}
        )
        assert signed.status_code == 200, signed.text
        stored = uppy.post_form(signed.json(), "take.wav", data, "audio/wav")
        assert stored.status_code == 201, stored.text
        parsed = keys.parse_key("uploads/", signed.json()["key"])
        assert parsed is not None
        upload_id = parsed[1]

        confirmed = on_b.post(f"/api/uploads/{upload_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        assert (confirmed.json()["id"], confirmed.json()["size"], confirmed.json()["durationSeconds"]) == (
            upload_id,
            len(data),
            1.5,
        )
        assert [u["id"] for u in on_b.get("/api/uploads").json()["uploads"]] == [upload_id]
