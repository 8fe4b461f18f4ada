"""What the stock ``@uppy/aws-s3`` client sends, done with an HTTP client.

Requests to Soundpost carry the session cookie (same origin) and, for unsafe
methods, the ``Origin`` and ``Sec-Fetch-Site`` headers a browser adds. Requests to
S3 carry no cookies: the bytes go straight from the "browser" to the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx

JSON = {"Accept": "application/json"}


def same_origin(client: httpx.Client) -> dict[str, str]:
    return {**JSON, "Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"}


def params(client: httpx.Client, filename: str, content_type: str, size: int | None = None) -> httpx.Response:
    """``getUploadParameters``: Uppy puts the file's meta in ``metadata[...]``."""
    query = {
        "filename": filename,
        "type": content_type,
        "metadata[name]": filename,
        "metadata[type]": content_type,
    }
    if size is not None:
        query["metadata[size]"] = str(size)
    return client.get("/s3/params", params=query, headers=JSON)


def post_form(signed: dict[str, object], filename: str, data: bytes, content_type: str) -> httpx.Response:
    """Uppy's form upload: the signed fields, then the file last."""
    fields = signed["fields"]
    assert isinstance(fields, dict)
    return httpx.post(str(signed["url"]), data=fields, files={"file": (filename, data, content_type)})


def simple_upload(client: httpx.Client, filename: str, data: bytes, content_type: str) -> str:
    """The whole non-multipart path; returns the key the file was stored under."""
    signed = params(client, filename, content_type, len(data))
    assert signed.status_code == 200, signed.text
    stored = post_form(signed.json(), filename, data, content_type)
    assert stored.status_code == 201, stored.text
    return str(signed.json()["fields"]["key"])


def upload_path(upload_id: str, suffix: str = "") -> str:
    return f"/s3/multipart/{quote(upload_id, safe='')}{suffix}"


@dataclass
class Multipart:
    """One multipart upload as Uppy drives it."""

    client: httpx.Client
    key: str
    upload_id: str
    bucket: str

    @classmethod
    def create(
        cls,
        client: httpx.Client,
        filename: str,
        content_type: str,
        size: int | None = None,
        checksums: bool = False,
    ) -> Multipart:
        """``checksums``: ask for SHA-256 part checksums, as Soundpost's page does (stock Uppy does not)."""
        metadata: dict[str, object] = {"name": filename, "type": content_type}
        if size is not None:
            metadata["size"] = size
        if checksums:
            metadata["checksumAlgorithm"] = "SHA256"
        answer = create(client, filename, content_type, metadata)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return cls(client, body["key"], body["uploadId"], body["bucket"])

    def sign_part(self, number: int, key: str | None = None, checksum: str | None = None) -> httpx.Response:
        query = {"key": key or self.key, **({"checksumSha256": checksum} if checksum else {})}
        return self.client.get(upload_path(self.upload_id, f"/{number}"), params=query, headers=JSON)

    def sign_batch(self, numbers: list[int], key: str | None = None) -> httpx.Response:
        query = {"key": key or self.key, "partNumbers": ",".join(map(str, numbers))}
        return self.client.get(upload_path(self.upload_id, "/batch"), params=query, headers=JSON)

    def put_part(self, number: int, data: bytes, checksum: str | None = None) -> dict[str, object]:
        """Sign one part (asking to pin ``checksum``), PUT its bytes with the headers signed, keep S3's ETag."""
        signed = self.sign_part(number, checksum=checksum)
        assert signed.status_code == 200, signed.text
        headers = signed.json().get("headers", {})  # what the URL signed, as the page sends it
        put = httpx.put(signed.json()["url"], content=data, headers=headers, timeout=30)
        assert put.status_code == 200, put.text
        part: dict[str, object] = {
            "PartNumber": number,
            "ETag": put.headers["ETag"].strip('"'),
        }  # sanitizeETag
        if checksum:
            part["ChecksumSHA256"] = checksum
        return part

    def list_parts(self, key: str | None = None) -> httpx.Response:
        return self.client.get(upload_path(self.upload_id), params={"key": key or self.key}, headers=JSON)

    def complete(self, parts: list[dict[str, object]], key: str | None = None) -> httpx.Response:
        return self.client.post(
            upload_path(self.upload_id, "/complete"),
            params={"key": key or self.key},
            json={"parts": parts},
            headers=same_origin(self.client),
        )

    def abort(self, key: str | None = None) -> httpx.Response:
        return self.client.delete(
            upload_path(self.upload_id), params={"key": key or self.key}, headers=same_origin(self.client)
        )

    def as_seen_by(self, other: httpx.Client) -> Multipart:
        """The same upload, driven by another user's client."""
        return Multipart(other, self.key, self.upload_id, self.bucket)


def create(
    client: httpx.Client, filename: str, content_type: str, metadata: dict[str, object]
) -> httpx.Response:
    """``createMultipartUpload``."""
    return client.post(
        "/s3/multipart",
        json={"filename": filename, "type": content_type, "metadata": metadata},
        headers=same_origin(client),
    )


def multipart_upload(
    client: httpx.Client,
    filename: str,
    data: bytes,
    content_type: str,
    part_size: int,
    declare_size: bool = True,
) -> httpx.Response:
    """The whole multipart path; returns the answer to complete."""
    upload = Multipart.create(client, filename, content_type, len(data) if declare_size else None)
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    parts = [upload.put_part(n, chunk) for n, chunk in enumerate(chunks, start=1)]
    return upload.complete(parts)
