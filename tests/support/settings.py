"""SOUNDPOST_* blocks that tests compose an app's settings from, each written once."""

from __future__ import annotations

from service.devstack import S3Endpoint


def s3_settings(endpoint: S3Endpoint, bucket: str) -> dict[str, str]:
    """Point the app at ``bucket`` on ``endpoint``, with that endpoint's credentials."""
    return {
        "SOUNDPOST_S3_ENDPOINT": endpoint.url,
        "SOUNDPOST_S3_REGION": endpoint.region,
        "SOUNDPOST_S3_BUCKET": bucket,
        "SOUNDPOST_S3_ACCESS_KEY_ID": endpoint.access_key,
        "SOUNDPOST_S3_SECRET_ACCESS_KEY": endpoint.secret_key,
    }


def dev_provider_settings(issuer: str) -> dict[str, str]:
    """Make the dev identity provider (oidc-provider-mock at ``issuer``) the only provider, as `dev` does."""
    return {
        "SOUNDPOST_PROVIDERS": "dev",
        "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": f"{issuer}/.well-known/openid-configuration",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost-dev",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "soundpost-dev-secret",
    }


# The fewest settings that load: for unit tests that build Settings and reach no provider or S3.
MINIMAL_SETTINGS = {
    "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1",
    "SOUNDPOST_SESSION_SECRET": "x" * 32,
    "SOUNDPOST_PROVIDERS": "p",
    "SOUNDPOST_PROVIDER_P_CLIENT_ID": "i",
    "SOUNDPOST_PROVIDER_P_CLIENT_SECRET": "s",
    "SOUNDPOST_PROVIDER_P_DISCOVERY_URL": "http://127.0.0.1/d",
    "SOUNDPOST_S3_BUCKET": "bucket",
}
