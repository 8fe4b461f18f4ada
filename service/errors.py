"""The project's exceptions, drawn once, and the one error shape: ``{"error": {"code", "detail", "path"?}}``.

    Exception
    ├── ApiError                         service.errors: a client-facing answer (status, code, detail)
    ├── StorageError                     service.storage.errors: what the store did
    │   ├── StorageUnavailable           -> 503 storage_unavailable, Retry-After
    │   ├── StorageRefused               -> 502 storage_bucket_missing / storage_credentials_refused / storage_error
    │   ├── NotFound                     -> handled where it happens (404, or "look again")
    │   ├── PreconditionFailed           -> handled where it happens (another promoter won)
    │   └── PartsRejected                -> 400 invalid_part
    ├── RevocationUnavailable            service.identity.revocation: -> 503 revocation_unavailable
    ├── StorageMisconfigured             service.storage.client: start-up stops, naming the setting
    ├── SetupError                       service.storage.bucket: `soundpost bucket setup` exits non-zero
    └── ValueError
        └── SettingsError                service.settings: start-up stops, naming every bad setting

Which exception becomes which answer is decided in one place, ``service.http.handlers``.
Codes are stable snake_case strings that clients switch on; ``detail`` is for people.
"""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    detail: str
    path: str | None = None


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    """An error the client caused or can act on; becomes the JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        link: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.link = link  # (label, URL): the way forward a browser's error page offers, e.g. "Start again"
        self.status = status
        self.code = code
        self.detail = detail
        self.path = path
        self.headers = headers
