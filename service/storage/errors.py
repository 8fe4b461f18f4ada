"""What the store did, in the project's own words: botocore's errors are classified here and nowhere else.

Every ``Storage`` method raises only these (the HTTP layer decides what each
answers, ``service.http.handlers``); nothing above the storage layer imports botocore.

    StorageError                 the store failed or refused; ``advice`` says what fixes it
    ├── StorageUnavailable       down, unreachable, throttling or failing: retry later
    ├── StorageRefused           answered with a refusal only an operator can fix (bucket, credentials)
    ├── NotFound                 the object or multipart upload does not exist
    ├── PreconditionFailed       a conditional write or copy lost to another writer
    └── PartsRejected            S3 refused to assemble a multipart upload's parts
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import botocore.exceptions
from botocore.exceptions import ClientError, NoCredentialsError

# What a stopped, unreachable or hung S3 raises once botocore's bounded retries are spent.
UNREACHABLE: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)
# What an S3 that answers, but refuses, raises.
REFUSALS: tuple[type[Exception], ...] = (ClientError, NoCredentialsError)

CREDENTIAL_SETTINGS = (
    "SOUNDPOST_S3_ACCESS_KEY_ID and SOUNDPOST_S3_SECRET_ACCESS_KEY (and SOUNDPOST_S3_SESSION_TOKEN), "
    "or the default AWS credential chain when they are unset"
)

# S3 error codes by what fixes them. Bodiless answers (HEAD) carry only the HTTP status as the code.
THROTTLED = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
)
SKEWED = frozenset({"RequestTimeTooSkewed"})
BUCKET_MISSING = frozenset({"NoSuchBucket"})
CREDENTIALS_REFUSED = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "403",
    }
)
MISSING = frozenset({"404", "NoSuchKey", "NoSuchUpload", "NotFound"})
# 412 for If-Match / If-None-Match / CopySourceIfMatch; 409 is what S3 answers a conditional
# write that raced another one on the same key.
LOST = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict", "409"})


class StorageError(Exception):
    """The store failed or refused; ``advice`` is the log line that says what to fix."""

    def __init__(self, advice: str = "", *, level: int = logging.ERROR) -> None:
        super().__init__(advice)
        self.advice = advice
        self.level = level


class StorageUnavailable(StorageError):
    """The store cannot serve right now: unreachable, throttling, failing, or our clock is off."""

    def __init__(
        self, advice: str, *, retry_after: int = 5, level: int = logging.WARNING, unreachable: bool = False
    ) -> None:
        super().__init__(advice, level=level)
        self.retry_after = retry_after
        self.unreachable = unreachable  # no answer at all, as opposed to an answer that says "later"


class StorageRefused(StorageError):
    """The store refuses in a way only an operator can fix; ``problem`` is the stable code."""

    def __init__(self, problem: str, advice: str) -> None:
        super().__init__(advice)
        self.problem = problem  # bucket_missing, credentials_refused or error


class NotFound(StorageError):
    """The object or multipart upload does not exist (S3 answered 404 / NoSuchKey / NoSuchUpload)."""


class PreconditionFailed(StorageError):
    """A conditional write or copy lost: the object exists already, or is not the version named."""


class PartsRejected(StorageError):
    """S3 refused to assemble the parts (a part missing, too small, out of order)."""


def error_code(exc: Exception) -> tuple[str, int]:
    """(S3's error code, HTTP status) of a refusal; NoCredentials is a refusal before any request."""
    if not isinstance(exc, ClientError):
        return "NoCredentials", 0
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return str(exc.response.get("Error", {}).get("Code") or status), status


def classify(exc: Exception, bucket: str) -> StorageError:
    """What a botocore error means, as one of ours: transient ones retry, the operator's name the fix."""
    if isinstance(exc, UNREACHABLE):
        return StorageUnavailable(type(exc).__name__, unreachable=True)
    code, status = error_code(exc)
    if code in MISSING:
        return NotFound(f"S3 has no such object or upload ({code})")
    if code in THROTTLED or status >= 500:
        return StorageUnavailable(f"S3 is throttling or failing ({code})")
    if code in SKEWED:
        return StorageUnavailable(
            "S3 says this server's clock is off by more than 15 minutes (RequestTimeTooSkewed): "
            "synchronise the clock (NTP)",
            retry_after=30,
            level=logging.ERROR,
        )
    if code in BUCKET_MISSING:
        return StorageRefused(
            "bucket_missing",
            f"the bucket {bucket!r} does not exist (NoSuchBucket): "
            "set SOUNDPOST_S3_BUCKET to an existing bucket, or create it",
        )
    if code in CREDENTIALS_REFUSED or code == "NoCredentials":
        found = (
            "no S3 credentials were found"
            if code == "NoCredentials"
            else f"S3 refused the credentials ({code})"
        )
        return StorageRefused(
            "credentials_refused",
            f"{found}: check {CREDENTIAL_SETTINGS}, and that they may use the bucket {bucket!r}",
        )
    return StorageRefused("error", f"S3 refused a request with {code} (HTTP {status})")


@contextlib.contextmanager
def translated(bucket: str, *, conditional: bool = False) -> Iterator[None]:
    """Raise botocore's errors as ours; with ``conditional``, a lost condition is PreconditionFailed."""
    try:
        yield
    except (*UNREACHABLE, *REFUSALS) as exc:
        if conditional and isinstance(exc, ClientError):
            code, status = error_code(exc)
            if code in LOST or status in (412, 409):
                raise PreconditionFailed(f"a conditional request lost ({code})") from None
        raise classify(exc, bucket) from exc
