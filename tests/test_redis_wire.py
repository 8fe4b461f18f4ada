"""The shared call's own socket (service.limits.wire): the same server, user and database as coredis, errors as coredis's."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import coredis
import coredis.exceptions
import limits
import pytest

from service.limits.connection import open_connection
from service.limits.shared import open_shared


async def require_password(redis_url: str, password: str) -> None:
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.config_set({"requirepass": password})
    finally:
        client.connection_pool.disconnect()


def with_password_and_database(redis_url: str, password: str, database: int) -> str:
    address = urlsplit(redis_url).netloc
    return f"redis://:{password}@{address}/{database}"


def test_a_password_and_a_database_in_the_url_are_used_for_every_grant(redis_url: str) -> None:
    """redis://:secret@host/3: the grant is given, and its key is in database 3, where coredis looks too."""

    async def run() -> tuple[int | None, int, int]:
        await require_password(redis_url, "s3cret")
        url = with_password_and_database(redis_url, "s3cret", 3)
        connection = open_connection(url)
        limiter = open_shared(connection, {"uploads": limits.parse_many("5/minute")}, 0)["uploads"]
        try:
            granted = await limiter.hit("alice")
            other: coredis.Redis[bytes] = coredis.Redis.from_url(
                with_password_and_database(redis_url, "s3cret", 0)
            )
            try:
                in_zero = await other.exists(["soundpost:budget:uploads:alice"])
            finally:
                other.connection_pool.disconnect()
            return granted, await connection.redis.exists(["soundpost:budget:uploads:alice"]), in_zero
        finally:
            limiter.close()

    granted, in_three, in_zero = asyncio.run(run())
    assert (granted, in_three, in_zero) == (None, 1, 0)


def test_a_wrong_password_is_a_redis_error_and_the_next_call_tries_again(redis_url: str) -> None:
    """The refused AUTH fails the hit as the limiter's storage error (a 503 upstream); it does not stick."""

    async def run() -> list[str]:
        await require_password(redis_url, "right")
        wrong = open_shared(
            open_connection(with_password_and_database(redis_url, "wrong", 0)),
            {"uploads": limits.parse_many("5/minute")},
            0,
        )["uploads"]
        causes = []
        try:
            for _ in range(2):
                with pytest.raises(limits.errors.StorageError) as failed:
                    await wrong.hit("alice")
                causes.append(type(failed.value.__cause__).__name__)
        finally:
            wrong.close()
        return causes

    causes = asyncio.run(run())
    assert all(issubclass(getattr(coredis.exceptions, c), coredis.exceptions.RedisError) for c in causes), (
        causes
    )
    assert len(causes) == 2
