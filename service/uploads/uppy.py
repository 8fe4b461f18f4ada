"""The signing endpoints the stock ``@uppy/aws-s3`` client calls, under ``/s3``.

Same paths and shapes as Uppy Companion's S3 routes, so an unmodified Uppy
(``companionEndpoint`` in v6, ``endpoint`` in v5) works against Soundpost when both
are served from one origin (the session cookie is all Uppy sends). Unlike
Companion, every route needs a signed-in user, new keys follow the same rules as
``POST /api/upload/presigned-url``, and every operation on an existing upload first
checks that the key is the caller's and that the upload id was sealed for that key
at creation (``service.core.upload_tokens``: S3's id and the upload's byte limit, which
completion enforces). Part signatures are budgeted per upload and per user.

A client may ask for SHA-256 part checksums at creation (``metadata.checksumAlgorithm:
"SHA256"``, which stock Uppy never sends): then every part must name its SHA-256 at
completion, which keeps them beside the staging object (``.parts.json``) for promotion to
check while it decodes, whether or not the store checked them itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from service.core import budgets, keys, upload_tokens
from service.core.checksums import DeclaredPart, PartsRecord, parts_encoder
from service.errors import ApiError
from service.http.api import Spec
from service.http.authentication import require_user
from service.http.handlers import STORAGE_ERRORS
from service.http.params import decode_json, decode_path, decode_query, read_json_body
from service.http.ratelimit import spend
from service.observability import PRESIGNED
from service.resources import resources
from service.schemas import (
    BatchQuery,
    Completed,
    CompleteRequest,
    KeyQuery,
    MultipartCreated,
    MultipartPath,
    MultipartRequest,
    ParamsQuery,
    PartChecksumQuery,
    PartPath,
    SignedPart,
    SignedParts,
    SignedPost,
    SignedPut,
    UploadedPart,
    complete_request_decoder,
    json_response,
    multipart_request_decoder,
)
from service.settings import Settings
from service.storage.client import Chosen, Part, Storage
from service.storage.errors import NotFound, PartsRejected
from service.uploads.presign import FieldPaths, new_upload, required_size

# 10,000 parts of {"PartNumber": n, "ETag": "\"<32 hex>\""} fit well inside this.
MAX_COMPLETE_BODY = 1024 * 1024
MAX_PART_NUMBER = 10_000
# Uppy asks for a handful at a time; the cap keeps one request from costing thousands of signatures.
MAX_BATCH = 100
QUERY_PATHS = FieldPaths(filename="filename", content_type="type", size="metadata[size]")
NOT_YOURS = "This upload does not exist or is not yours."
# ASCII digits, short enough for int() (which refuses more than 4,300 digits) and far past any real size.
WHOLE_NUMBER = re.compile(r"[0-9]{1,20}")
PART_DIGITS = re.compile(r"[0-9]{1,5}")


def _context(request: Request) -> tuple[Settings, Storage]:
    state = resources(request)
    return state["settings"], state["storage"]


def _part_checksums(value: object, path: str) -> bool:
    """Whether the client asks for SHA-256 part checksums: ``SHA256``, or nothing (stock Uppy) for none."""
    if value is None or value == "":
        return False
    if value != "SHA256":
        raise ApiError(422, "validation_error", 'The only part checksum algorithm is "SHA256".', path)
    return True


def _declared_size(value: object, path: str) -> int | None:
    """Uppy sends whatever metadata the page set; a size, if present, must be a positive whole number.

    Only ASCII digits are a number here: ``str.isdigit`` also accepts "²", which ``int`` refuses.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and WHOLE_NUMBER.fullmatch(value))
    ):
        raise ApiError(422, "validation_error", "The size must be a whole number of bytes.", path)
    size = int(value)
    if size < 1:
        raise ApiError(422, "validation_error", "The size must be at least 1 byte.", path)
    return size


async def params(request: Request) -> Response:
    """``GET /s3/params``: a presigned POST (or PUT), exactly as ``POST /api/upload/presigned-url`` makes it."""
    user = require_user(request)
    settings, storage = _context(request)
    ask = decode_query(request, ParamsQuery)
    by_put = storage.upload_method == "PUT"
    size = required_size(ask.size, QUERY_PATHS.size) if by_put else 0
    upload = new_upload(settings, user, ask.filename, ask.type, ask.size, QUERY_PATHS)
    await resources(request)["reservations"].admit(user.user_id, upload.upload_id, ask.size, QUERY_PATHS.size)
    if by_put:
        put = await storage.presign_put(upload.key, upload.content_type, size)
        PRESIGNED["put"].inc()
        return json_response(SignedPut(put.url, put.headers, settings.presign_ttl))
    post = await storage.presign_post(upload.key, upload.content_type, upload.max_bytes)
    PRESIGNED["post"].inc()
    return json_response(SignedPost(post.url, post.fields, settings.presign_ttl))


async def create_multipart(request: Request) -> Response:
    """``POST /s3/multipart``: start a multipart upload under a key of the caller's."""
    user = require_user(request)
    settings, storage = _context(request)
    ask = decode_json(multipart_request_decoder, await read_json_body(request))
    size = _declared_size(ask.metadata.get("size"), "$.metadata.size")
    checksums = _part_checksums(ask.metadata.get("checksumAlgorithm"), "$.metadata.checksumAlgorithm")
    upload = new_upload(
        settings,
        user,
        ask.filename,
        ask.type,
        size,
        FieldPaths(content_type="$.type", size="$.metadata.size"),
    )
    await resources(request)["reservations"].admit(user.user_id, upload.upload_id, size, "$.metadata.size")
    s3_upload_id, store_checksums = await storage.create_multipart(upload.key, upload.content_type, checksums)
    PRESIGNED["multipart"].inc()
    upload_id = upload_tokens.seal(
        settings.session_secret, upload.key, s3_upload_id, upload.max_bytes, checksums, store_checksums
    )
    return json_response(
        MultipartCreated(
            upload.key,
            upload_id,
            settings.s3_bucket,
            settings.multipart_part_bytes,
            upload.max_bytes,
            "SHA256" if checksums else None,
        )
    )


@dataclass(frozen=True)
class OwnedUpload:
    """A multipart upload the caller may act on: its key, S3's id and the byte limit sealed at creation."""

    settings: Settings
    storage: Storage
    key: str
    s3_upload_id: str
    sealed: upload_tokens.SealedUpload
    owner: str
    staging_id: str  # the upload id in the key (not the multipart upload id)


def _owned_upload(request: Request) -> OwnedUpload:
    """The upload named by the request, once the key is the caller's and the upload id was sealed for it.

    Anything else is 403 before any S3 call; the seal makes asking S3 unnecessary.
    """
    user = require_user(request)
    settings, storage = _context(request)
    key = decode_query(request, KeyQuery).key
    upload_id = decode_path(request, MultipartPath).upload_id
    parsed = keys.parse_key(settings.s3_key_prefix, key)
    if parsed is None or parsed.owner != user.user_id:
        raise ApiError(403, "forbidden", NOT_YOURS, "key")
    sealed = upload_tokens.unseal(settings.session_secret, key, upload_id)
    if sealed is None:
        raise ApiError(403, "forbidden", NOT_YOURS, "uploadId")
    return OwnedUpload(settings, storage, key, sealed.s3_upload_id, sealed, parsed.owner, parsed.upload_id)


async def _spend_signatures(request: Request, upload: OwnedUpload, numbers: list[int], path: str) -> None:
    """Refuse part numbers past what the upload can need, then spend one unit per signature.

    Per upload (scaled by the parts it needs) and per user: the largest allowed file
    signs every part at once, and no user signs without bound.
    """
    # S3's smallest part, or the configured part size where tests allow smaller ones
    smallest = min(upload_tokens.MIN_PART_BYTES, upload.settings.multipart_part_bytes)
    needed = upload.sealed.parts_needed(smallest)
    if numbers[-1] > needed:
        raise ApiError(
            422,
            "validation_error",
            f"This upload needs at most {needed} parts ({smallest} bytes each but the last): "
            f"part {numbers[-1]} is past them.",
            path,
        )
    await spend(request, budgets.PARTS, upload.s3_upload_id, len(numbers), needed)
    await spend(request, budgets.PART_SIGNATURES, require_user(request).user_id, len(numbers))


def _part_number(value: str) -> int:
    """One listed part number: ASCII digits only, from 1 to S3's 10,000."""
    if not PART_DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_PART_NUMBER:
        raise ApiError(
            422, "validation_error", f"Part numbers run from 1 to {MAX_PART_NUMBER}.", "partNumbers"
        )
    return int(value)


async def sign_part(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/{partNumber}``: a presigned UploadPart URL, and the headers it signed.

    A part's SHA-256 is signed (and so must be sent) unless the store refused part
    checksums when the upload was created: then promotion alone checks it.
    """
    number = decode_path(request, PartPath).part_number
    checksum = decode_query(request, PartChecksumQuery).checksum_sha256
    upload = _owned_upload(request)
    if upload.sealed.part_checksums and not upload.sealed.store_checksums:
        checksum = None
    await _spend_signatures(request, upload, [number], "partNumber")
    url = await upload.storage.presign_part(upload.key, upload.s3_upload_id, number, checksum)
    PRESIGNED["part"].inc()
    headers = None if checksum is None else {"x-amz-checksum-sha256": checksum}
    return json_response(SignedPart(url, upload.settings.presign_ttl, headers))


async def sign_parts(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}/batch?partNumbers=1,2``: what older Uppy clients ask for."""
    listed = decode_query(request, BatchQuery).part_numbers.split(",")
    if len(listed) > MAX_BATCH:
        raise ApiError(
            422, "validation_error", f"Ask for at most {MAX_BATCH} parts at a time.", "partNumbers"
        )
    numbers = sorted({_part_number(item.strip()) for item in listed})
    upload = _owned_upload(request)
    await _spend_signatures(request, upload, numbers, "partNumbers")
    storage, key, s3_upload_id = upload.storage, upload.key, upload.s3_upload_id
    urls = {str(n): await storage.presign_part(key, s3_upload_id, n) for n in numbers}
    PRESIGNED["part"].inc(len(urls))
    return json_response(SignedParts(urls))


async def list_parts(request: Request) -> Response:
    """``GET /s3/multipart/{uploadId}``: the parts uploaded so far, so Uppy can resume."""
    upload = _owned_upload(request)
    try:
        parts = await upload.storage.list_parts(upload.key, upload.s3_upload_id)
    except NotFound:
        raise ApiError(403, "forbidden", NOT_YOURS) from None
    return json_response([UploadedPart(p.number, p.etag, p.size) for p in parts])


async def complete(request: Request) -> Response:
    """``POST /s3/multipart/{uploadId}/complete``: assemble the parts, if their total is allowed.

    S3 cannot limit the size of a multipart upload, so the sizes S3 lists for the
    chosen parts are added up here first, against the limit sealed into the upload
    id at creation (the declared size, else the configured maximum) and the
    configured maximum now; an oversized upload is aborted and nothing is stored.
    Each part is pinned by its ETag, so a part replaced after this check fails to assemble.
    An upload created with part checksums keeps what its parts declared before S3 assembles
    them, so no promotion can meet the object without the declaration.
    """
    upload = _owned_upload(request)
    settings, storage, key = upload.settings, upload.storage, upload.key
    ask = decode_json(complete_request_decoder, await read_json_body(request, MAX_COMPLETE_BODY))
    if upload.sealed.part_checksums:
        _require_checksums(ask)
    try:
        uploaded = {p.number: p for p in await storage.list_parts(key, upload.s3_upload_id)}
    except NotFound:
        raise ApiError(403, "forbidden", NOT_YOURS) from None
    chosen = _chosen_parts(ask, uploaded)
    limit = min(upload.sealed.max_bytes, settings.max_upload_bytes)
    total = sum(p.size for p in chosen)
    if total > limit:
        await storage.abort_multipart(key, upload.s3_upload_id)
        raise ApiError(
            413,
            "file_too_large",
            f"The parts add up to {total} bytes, over this upload's limit of {limit} bytes "
            "(its declared size, or the configured maximum); the upload was discarded.",
        )
    declared = {p.number: p.checksum_sha256 for p in ask.parts} if upload.sealed.part_checksums else {}
    if declared:
        record = PartsRecord([DeclaredPart(p.number, p.size, declared[p.number] or "") for p in chosen])
        parts_key = keys.parts_key(settings.s3_key_prefix, upload.owner, upload.staging_id)
        await storage.put_plain(parts_key, parts_encoder.encode(record))
    try:
        location = await storage.complete_multipart(
            key,
            upload.s3_upload_id,
            [
                Chosen(p.number, p.etag, declared.get(p.number) if upload.sealed.store_checksums else None)
                for p in chosen
            ],
        )
    except PartsRejected as exc:
        raise ApiError(400, "invalid_part", f"Storage refused the parts ({exc}).", "$.parts") from None
    except NotFound:
        raise ApiError(403, "forbidden", NOT_YOURS) from None
    return json_response(Completed(location, key, settings.s3_bucket))


def _require_checksums(ask: CompleteRequest) -> None:
    """An upload created asking for part checksums names one for every part it assembles."""
    for index, part in enumerate(ask.parts):
        if part.checksum_sha256 is None:
            raise ApiError(
                422,
                "validation_error",
                f"This upload was created with SHA-256 part checksums: part {part.number} needs its own.",
                f"$.parts[{index}].ChecksumSHA256",
            )


def _chosen_parts(ask: CompleteRequest, uploaded: dict[int, Part]) -> list[Part]:
    """The listed parts as S3 has them: each once, with the ETag it was uploaded with."""
    chosen: list[Part] = []
    seen: set[int] = set()
    for part in ask.parts:
        if part.number in seen:
            raise ApiError(400, "invalid_part", f"Part {part.number} is listed twice.", "$.parts")
        seen.add(part.number)
        have = uploaded.get(part.number)
        # Uppy v6 strips the quotes S3 puts around ETags; compare without them.
        if have is None or have.etag.strip('"') != part.etag.strip('"'):
            raise ApiError(
                400, "invalid_part", f"Part {part.number} was not uploaded with that ETag.", "$.parts"
            )
        chosen.append(have)
    return chosen


async def abort(request: Request) -> Response:
    """``DELETE /s3/multipart/{uploadId}``: drop the upload and its parts."""
    upload = _owned_upload(request)
    try:
        await upload.storage.abort_multipart(upload.key, upload.s3_upload_id)
    except NotFound:
        raise ApiError(403, "forbidden", NOT_YOURS) from None
    return json_response({})


# --- contracts (service/app.py routes these; /openapi.json is made from them) -----------------------

_NEW_UPLOAD = {
    413: ("file_too_large", "quota_exceeded"),
    422: ("unsupported_type", "extension_mismatch"),
    429: ("too_many_pending_uploads",),
    503: ("limits_unavailable",),
}
_OWNED = {403: ("forbidden",), **STORAGE_ERRORS}
_SIGNED = {403: ("forbidden",), 422: ("validation_error",)}  # signing parts calls no S3
PARAMS = Spec(
    "A presigned POST (or PUT, on stores without POST uploads) for Uppy, as the presign route makes it.",
    response=SignedPost | SignedPut,
    query=ParamsQuery,
    signed_in=True,
    budget=budgets.UPLOADS,
    errors=_NEW_UPLOAD,
    tag="uppy",
)
CREATE = Spec(
    "Start a multipart upload under a key of the caller's.",
    response=MultipartCreated,
    body=MultipartRequest,
    signed_in=True,
    budget=budgets.UPLOADS,
    errors={**_NEW_UPLOAD, **STORAGE_ERRORS, 503: ("storage_unavailable", "limits_unavailable")},
    tag="uppy",
)
SIGN_PARTS = Spec(
    "Presigned UploadPart URLs for several parts.",
    response=SignedParts,
    path=MultipartPath,
    query=BatchQuery,
    signed_in=True,
    budget=budgets.PARTS,
    errors=_SIGNED,
    tag="uppy",
)
SIGN_PART = Spec(
    "A presigned UploadPart URL for one part (pinning its SHA-256 when checksumSha256 is given).",
    response=SignedPart,
    path=PartPath,
    query=PartChecksumQuery,
    signed_in=True,
    budget=budgets.PARTS,
    errors=_SIGNED,
    tag="uppy",
)
PARTS = Spec(
    "The parts uploaded so far.",
    response=list[UploadedPart],
    path=MultipartPath,
    query=KeyQuery,
    signed_in=True,
    budget=budgets.STORAGE,
    errors=_OWNED,
    tag="uppy",
)
COMPLETE = Spec(
    "Assemble the parts, if their total size is allowed (with each part's SHA-256, if created asking for them).",
    response=Completed,
    path=MultipartPath,
    query=KeyQuery,
    body=CompleteRequest,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={**_OWNED, 400: ("invalid_part",), 413: ("file_too_large",)},
    tag="uppy",
)
ABORT = Spec(
    "Abandon a multipart upload.",
    response=dict[str, str],
    path=MultipartPath,
    query=KeyQuery,
    signed_in=True,
    budget=budgets.STORAGE,
    errors=_OWNED,
    tag="uppy",
)
