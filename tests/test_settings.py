"""Settings: validated once at start-up; every problem named at once; secrets never shown."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.settings import SettingsError, load_settings

GOOD = {
    "SOUNDPOST_PUBLIC_URL": "https://audio.example.com",
    "SOUNDPOST_SESSION_SECRET": "s" * 40,
    "SOUNDPOST_PROVIDERS": "google,github",
    "SOUNDPOST_PROVIDER_GOOGLE_DISCOVERY_URL": "https://accounts.google.com/.well-known/openid-configuration",
    "SOUNDPOST_PROVIDER_GOOGLE_CLIENT_ID": "google-id",
    "SOUNDPOST_PROVIDER_GOOGLE_CLIENT_SECRET": "google-client-secret-value",
    "SOUNDPOST_PROVIDER_GITHUB_KIND": "oauth2",
    "SOUNDPOST_PROVIDER_GITHUB_AUTHORIZE_URL": "https://github.com/login/oauth/authorize",
    "SOUNDPOST_PROVIDER_GITHUB_TOKEN_URL": "https://github.com/login/oauth/access_token",
    "SOUNDPOST_PROVIDER_GITHUB_USERINFO_URL": "https://api.github.com/user",
    "SOUNDPOST_PROVIDER_GITHUB_CLIENT_ID": "github-id",
    "SOUNDPOST_PROVIDER_GITHUB_CLIENT_SECRET": "github-client-secret-value",
    "SOUNDPOST_S3_BUCKET": "recordings",
    "SOUNDPOST_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "SOUNDPOST_S3_SECRET_ACCESS_KEY": "s3-secret-access-key-value",
}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    return raised.value.problems


def test_a_complete_configuration_loads_with_safe_defaults() -> None:
    settings = load_settings(GOOD)
    assert settings.secure_cookies
    assert settings.session_cookie == "soundpost_session"
    assert settings.presign_ttl == 600
    assert settings.s3_key_prefix == "uploads/"
    assert [p.kind for p in settings.providers] == ["oidc", "oauth2"]
    assert settings.providers[0].scopes == "openid email profile"
    assert (settings.s3_connect_timeout, settings.s3_read_timeout) == (3, 10)
    assert (settings.staging_grace, settings.staging_lifetime, settings.sweep_interval) == (60, 86400, None)
    assert (settings.user_quota_bytes, settings.max_pending_uploads) == (None, 50)


def test_sweeper_and_quota_settings_are_read() -> None:
    """Each lifecycle setting reaches the settings object as the whole number given."""
    settings = load_settings(
        {
            **GOOD,
            "SOUNDPOST_STAGING_GRACE": "0",
            "SOUNDPOST_STAGING_LIFETIME": "7200",
            "SOUNDPOST_SWEEP_INTERVAL": "300",
            "SOUNDPOST_USER_QUOTA_BYTES": "1000000",
            "SOUNDPOST_MAX_PENDING_UPLOADS": "5",
        }
    )
    assert (settings.staging_grace, settings.staging_lifetime, settings.sweep_interval) == (0, 7200, 300)
    assert (settings.user_quota_bytes, settings.max_pending_uploads) == (1_000_000, 5)


def test_secrets_never_show_in_repr() -> None:
    text = repr(load_settings(GOOD))
    for secret in (
        "s" * 40,
        "google-client-secret-value",
        "github-client-secret-value",
        "s3-secret-access-key-value",
    ):
        assert secret not in text


def test_an_empty_environment_names_every_required_setting() -> None:
    found = "\n".join(problems({}))
    for name in (
        "SOUNDPOST_PUBLIC_URL",
        "SOUNDPOST_SESSION_SECRET",
        "SOUNDPOST_PROVIDERS",
        "SOUNDPOST_S3_BUCKET",
    ):
        assert name in found


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SOUNDPOST_PUBLIC_URL", "audio.example.com"),
        ("SOUNDPOST_PUBLIC_URL", "https://audio.example.com/?x=1"),
        ("SOUNDPOST_SESSION_SECRET", "short"),
        ("SOUNDPOST_SESSION_MAX_AGE", "forever"),
        ("SOUNDPOST_SESSION_MAX_AGE", "10"),
        ("SOUNDPOST_SESSION_COOKIE", "session"),
        ("SOUNDPOST_SESSION_COOKIE", "bad cookie;"),
        ("SOUNDPOST_PROVIDERS", "Google"),
        ("SOUNDPOST_PROVIDERS", "google,google"),
        ("SOUNDPOST_PROVIDER_GITHUB_KIND", "saml"),
        ("SOUNDPOST_PROVIDER_GOOGLE_DISCOVERY_URL", "ftp://x"),
        ("SOUNDPOST_S3_BUCKET", "Bad_Bucket"),
        ("SOUNDPOST_S3_ENDPOINT", "minio:9000"),
        ("SOUNDPOST_S3_KEY_PREFIX", "../escape"),
        ("SOUNDPOST_ALLOWED_TYPES", "audio/wav,image/png"),
        ("SOUNDPOST_MAX_UPLOAD_BYTES", "0"),
        ("SOUNDPOST_MAX_UPLOAD_BYTES", str(6 * 1024**3)),
        ("SOUNDPOST_PRESIGN_TTL", "86400"),
        ("SOUNDPOST_MULTIPART_PART_BYTES", str(1024 * 1024)),
        ("SOUNDPOST_MULTIPART_PART_BYTES", str(6 * 1024**3)),
        ("SOUNDPOST_MULTIPART_SMALL_PARTS_FOR_TESTS", "maybe"),
        ("SOUNDPOST_S3_CONNECT_TIMEOUT", "0"),
        ("SOUNDPOST_S3_CONNECT_TIMEOUT", "soon"),
        ("SOUNDPOST_S3_READ_TIMEOUT", "301"),
        ("SOUNDPOST_RATE_LIMIT", "often"),
        ("SOUNDPOST_RATE_LIMIT", "0/minute"),
        ("SOUNDPOST_RATE_LIMIT", "10/second;2000000/hour"),
        ("SOUNDPOST_PROVIDER_GITHUB_SCOPES", "openid read:user"),
        ("SOUNDPOST_PROVIDER_GITHUB_END_SESSION", "true"),
        ("SOUNDPOST_PROVIDER_GOOGLE_END_SESSION", "sometimes"),
        ("SOUNDPOST_SIGN_IN_TIMEOUT", "5"),
        ("SOUNDPOST_STAGING_GRACE", "3601"),
        ("SOUNDPOST_STAGING_LIFETIME", "60"),  # shorter than a POST policy can live
        ("SOUNDPOST_SWEEP_INTERVAL", "0"),
        ("SOUNDPOST_SWEEP_INTERVAL", "often"),
        ("SOUNDPOST_USER_QUOTA_BYTES", "0"),
        ("SOUNDPOST_MAX_PENDING_UPLOADS", "-1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(name: str, value: str) -> None:
    found = problems({**GOOD, name: value})
    assert any(name in problem for problem in found), found


def test_an_oauth2_provider_asking_for_openid_is_refused_at_start_up() -> None:
    """kind=oauth2 never checks an ID token, so asking for one is a misconfiguration, named as such."""
    found = "\n".join(problems({**GOOD, "SOUNDPOST_PROVIDER_GITHUB_SCOPES": "openid email"}))
    assert "SOUNDPOST_PROVIDER_GITHUB_SCOPES must not include openid" in found
    assert "SOUNDPOST_PROVIDER_GITHUB_KIND=oidc" in found


def test_a_provider_missing_its_urls_names_each_one() -> None:
    env = {k: v for k, v in GOOD.items() if "GITHUB_TOKEN_URL" not in k and "GOOGLE_CLIENT_ID" not in k}
    found = "\n".join(problems(env))
    assert "SOUNDPOST_PROVIDER_GITHUB_TOKEN_URL" in found and "SOUNDPOST_PROVIDER_GOOGLE_CLIENT_ID" in found


def test_s3_keys_go_together() -> None:
    env = {k: v for k, v in GOOD.items() if k != "SOUNDPOST_S3_SECRET_ACCESS_KEY"}
    assert any("SOUNDPOST_S3_SECRET_ACCESS_KEY" in p for p in problems(env))


def test_a_session_token_without_keys_is_refused() -> None:
    env = {k: v for k, v in GOOD.items() if "ACCESS_KEY" not in k}
    assert any(
        "SOUNDPOST_S3_SESSION_TOKEN" in p for p in problems({**env, "SOUNDPOST_S3_SESSION_TOKEN": "token"})
    )


def test_without_keys_the_default_credential_chain_is_used() -> None:
    env = {k: v for k, v in GOOD.items() if not k.startswith("SOUNDPOST_S3_") or k == "SOUNDPOST_S3_BUCKET"}
    settings = load_settings(env)
    assert settings.s3_access_key_id is None and settings.s3_secret_access_key is None


def test_allowed_types_accept_aliases_and_store_canonical_types() -> None:
    settings = load_settings({**GOOD, "SOUNDPOST_ALLOWED_TYPES": "audio/x-wav, audio/mp3, audio/wav"})
    assert settings.allowed_types == ("audio/wav", "audio/mpeg")


def test_plain_http_public_url_means_cookies_without_secure() -> None:
    assert not load_settings({**GOOD, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000"}).secure_cookies


def test_public_url_path_is_the_root_path() -> None:
    settings = load_settings({**GOOD, "SOUNDPOST_PUBLIC_URL": "https://example.com/soundpost/"})
    assert (settings.root_path, settings.home, settings.public_origin) == (
        "/soundpost",
        "/soundpost/",
        "https://example.com",
    )


@pytest.mark.peers  # runs `soundpost serve` in a process of its own: not for the fast loop
def test_serve_refuses_to_start_when_misconfigured() -> None:
    """The production command exits at once with every bad setting named, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "SOUNDPOST_PUBLIC_URL": "nope"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SOUNDPOST_PUBLIC_URL must be an http(s) URL" in done.stderr
    assert "SOUNDPOST_SESSION_SECRET is required" in done.stderr
    assert "Traceback" not in done.stderr


def test_parts_are_five_mib_unless_a_test_allows_smaller_ones() -> None:
    """The page uploads 5 MiB parts by default; a smaller part size needs the explicit test-only setting."""
    assert load_settings(GOOD).multipart_part_bytes == 5 * 1024 * 1024
    small = {**GOOD, "SOUNDPOST_MULTIPART_PART_BYTES": "65536"}
    assert any("SOUNDPOST_MULTIPART_PART_BYTES" in p for p in problems(small))
    allowed = load_settings({**small, "SOUNDPOST_MULTIPART_SMALL_PARTS_FOR_TESTS": "true"})
    assert allowed.multipart_part_bytes == 65536


def test_a_part_size_that_needs_more_than_10000_parts_is_refused() -> None:
    """S3 assembles at most 10,000 parts, so the largest upload must fit in that many."""
    env = {
        **GOOD,
        "SOUNDPOST_MAX_UPLOAD_BYTES": str(5 * 1024**3),
        "SOUNDPOST_MULTIPART_PART_BYTES": "65536",
        "SOUNDPOST_MULTIPART_SMALL_PARTS_FOR_TESTS": "true",
    }
    found = problems(env)
    assert any("more than 10000 parts" in p and "SOUNDPOST_MULTIPART_PART_BYTES" in p for p in found), found


@pytest.mark.parametrize("value", ["-1", "51", "a tenth"])
def test_a_lease_share_outside_0_to_50_percent_is_refused(value: str) -> None:
    """A replica may lease at most half of a budget ahead of use."""
    found = problems({**GOOD, "SOUNDPOST_REDIS_LEASE_PERCENT": value})
    assert any("SOUNDPOST_REDIS_LEASE_PERCENT" in problem for problem in found), found
