"""What an upload declares about its bytes and how promotion judges them; the setting that picks POST or PUT."""

from __future__ import annotations

import base64
import hashlib

import pytest

from service.core.checksums import declared_metadata
from service.lifecycle.integrity import check_integrity
from service.settings import SettingsError, load_settings
from service.storage.client import Digest, client_config
from tests.support.settings import MINIMAL_SETTINGS

DATA = b"RIFF" + bytes(100)
SHA = base64.b64encode(hashlib.sha256(DATA).digest()).decode()


def test_a_matching_declaration_passes() -> None:
    """Same SHA-256 and size as declared: no mismatch."""
    assert check_integrity(declared_metadata(SHA, len(DATA)), Digest(SHA, len(DATA))) is None


def test_no_declaration_passes_anything() -> None:
    """Nothing declared (an older page, stock Uppy): nothing to compare."""
    assert check_integrity({}, Digest(SHA, 7)) is None


def test_another_sha256_is_a_checksum_mismatch() -> None:
    """One flipped byte gives another digest: checksum_mismatch."""
    other = base64.b64encode(hashlib.sha256(DATA[:-1] + b"\1").digest()).decode()
    found = check_integrity(declared_metadata(SHA, None), Digest(other, len(DATA)))
    assert found is not None and found.code == "checksum_mismatch"


def test_another_length_is_a_size_mismatch_even_with_the_right_checksum_declared() -> None:
    """The size is compared first, from HEAD, before any read: size_mismatch names both numbers."""
    found = check_integrity(declared_metadata(SHA, len(DATA)), Digest(SHA, len(DATA) + 1))
    assert found is not None and found.code == "size_mismatch"
    assert str(len(DATA)) in found.detail and str(len(DATA) + 1) in found.detail


@pytest.mark.parametrize(
    ("raw", "method"), [(None, "auto"), ("post", "post"), ("PUT", "put"), ("auto", "auto")]
)
def test_upload_method_reads_auto_post_or_put(raw: str | None, method: str) -> None:
    env = {**MINIMAL_SETTINGS, **({"SOUNDPOST_UPLOAD_METHOD": raw} if raw else {})}
    assert load_settings(env).upload_method == method


def test_another_upload_method_stops_start_up_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="SOUNDPOST_UPLOAD_METHOD must be auto, post or put"):
        load_settings({**MINIMAL_SETTINGS, "SOUNDPOST_UPLOAD_METHOD": "form"})


def test_sdk_checksums_are_computed_and_validated_only_when_required() -> None:
    """botocore's default checksums (since 1.36) break presigned URLs on many stores: when_required."""
    config = client_config(load_settings(MINIMAL_SETTINGS))
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
