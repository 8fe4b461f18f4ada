"""Key building: the server alone decides where bytes land."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from service.core import keys
from tests.support.s3 import SOME_UPLOAD_ID

PREFIX = "uploads/"
ALICE = keys.user_id("dev", "alice")
BOB = keys.user_id("dev", "bob")


def test_user_id_is_stable_key_safe_and_fixed_length() -> None:
    assert keys.user_id("dev", "alice") == ALICE
    assert keys.USER_ID.match(ALICE)
    assert len(ALICE) == keys.USER_ID_LENGTH


def test_user_id_separates_providers_and_subjects() -> None:
    assert keys.user_id("google", "alice") != keys.user_id("github", "alice")
    # the separator keeps ("ab", "c") and ("a", "bc") apart
    assert keys.user_id("ab", "c") != keys.user_id("a", "bc")


def test_upload_ids_sort_newest_first_and_never_repeat() -> None:
    older = keys.new_upload_id(now=1_700_000_000.000)
    newer = keys.new_upload_id(now=1_700_000_000.001)
    assert newer < older
    assert len({keys.new_upload_id(now=1.0) for _ in range(1000)}) == 1000
    assert keys.upload_time(older) == pytest.approx(1_700_000_000.0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("interview.wav", "interview.wav"),
        ("Interview Final.WAV", "Interview-Final.wav"),
        ("../../etc/passwd.wav", "passwd.wav"),
        ("..\\..\\windows\\evil.wav", "evil.wav"),
        ("a/b/c/", "audio.wav"),
        ("", "audio.wav"),
        ("...", "audio.wav"),
        (".hidden.wav", "hidden.wav"),
        ("noextension", "noextension.wav"),
        ("Meeting v1.2", "Meeting-v1.2.wav"),
        ("tab\there\x00nul\x7fdel.wav", "tabherenuldel.wav"),
        ("line\nbreak.wav", "linebreak.wav"),
        ("quote\"and'semi;colon.wav", "quote-and-semi-colon.wav"),
        ("Ｆｕｌｌｗｉｄｔｈ.wav", "Fullwidth.wav"),
        ("café.wav", "café.wav"),
        ("cafe\u0301.wav", "café.wav"),
        ("録音 メモ.wav", "録音-メモ.wav"),
        ("a..b....wav", "a.b.wav"),
        ("-_-.wav", "audio.wav"),
        ("${filename}.wav", "filename.wav"),
    ],
)
def test_safe_filename(given: str, expected: str) -> None:
    assert keys.safe_filename(given, ".wav") == expected


def test_every_control_or_format_character_is_unprintable() -> None:
    """safe_filename skips its per-character filter for printable names; that is exact only if this holds."""
    others = (chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "C")
    assert not [ch for ch in others if ch.isprintable()]
    assert keys.safe_filename("zero\u200bwidth\u202espace.wav", ".wav") == "zerowidthspace.wav"


def test_safe_filename_bounds_length_in_bytes_and_keeps_the_extension() -> None:
    name = keys.safe_filename("é" * 500 + ".flac", ".flac")
    assert name.endswith(".flac")
    assert len(name.encode()) <= keys.MAX_FILENAME_BYTES
    assert keys.safe_filename("a" * 500 + ".mp3", ".mp3") == "a" * (keys.MAX_FILENAME_BYTES - 4) + ".mp3"


def test_built_key_parses_back_to_its_owner() -> None:
    """A signed key is a staging key: it parses back to (owner, id, name) and lies under the owner's prefix."""
    upload = keys.new_upload_id()
    key = keys.build_key(PREFIX, ALICE, upload, "x.wav")
    assert key == f"uploads/incoming/{ALICE}/{upload}/x.wav"
    assert keys.parse_key(PREFIX, key) == keys.ParsedKey(owner=ALICE, upload_id=upload, filename="x.wav")
    assert key.startswith(keys.user_prefix(PREFIX, ALICE))
    assert not key.startswith(keys.user_prefix(PREFIX, BOB))


def test_library_key_mirrors_the_staging_key_in_its_own_area() -> None:
    """Same owner, id and name, under library/: the public id is the same in both places."""
    upload = keys.new_upload_id()
    key = keys.library_key(PREFIX, ALICE, upload, "x.wav")
    assert key == f"uploads/library/{ALICE}/{upload}/x.wav"
    parsed = keys.parse_library_key(PREFIX, key)
    assert parsed is not None
    assert (parsed.owner, parsed.upload_id, parsed.filename) == (ALICE, upload, "x.wav")
    assert key.startswith(keys.user_prefix(PREFIX, ALICE, keys.LIBRARY))
    assert key.startswith(keys.upload_prefix(PREFIX, ALICE, upload, keys.LIBRARY))


@pytest.mark.parametrize("prefix", ["", "uploads/", "a/b/"])
def test_no_signed_key_can_ever_be_a_library_key(prefix: str) -> None:
    """Staging and library keys never parse as each other, whatever the configured prefix."""
    upload = keys.new_upload_id()
    staging = keys.build_key(prefix, ALICE, upload, "x.wav")
    library = keys.library_key(prefix, ALICE, upload, "x.wav")
    assert keys.parse_library_key(prefix, staging) is None
    assert keys.parse_key(prefix, library) is None
    assert not staging.startswith(keys.area_prefix(prefix, keys.LIBRARY))
    assert not library.startswith(keys.area_prefix(prefix, keys.STAGING))


def test_outbox_and_decided_records_name_their_upload_id() -> None:
    """Record keys hold the id alone and parse back to it; other keys do not parse."""
    upload = keys.new_upload_id()
    assert keys.outbox_key(PREFIX, upload) == f"uploads/outbox/{upload}.json"
    assert keys.decided_key(PREFIX, upload) == f"uploads/decided/{upload}.json"
    assert keys.parse_record_key(PREFIX, keys.OUTBOX, keys.outbox_key(PREFIX, upload)) == upload
    assert keys.parse_record_key(PREFIX, keys.DECIDED, keys.decided_key(PREFIX, upload)) == upload
    assert keys.parse_record_key(PREFIX, keys.OUTBOX, keys.decided_key(PREFIX, upload)) is None
    assert keys.parse_record_key(PREFIX, keys.OUTBOX, "uploads/outbox/nope.json") is None
    assert keys.parse_record_key(PREFIX, keys.OUTBOX, f"uploads/outbox/{upload}") is None


@pytest.mark.parametrize(
    "key",
    [
        "other/abc/def/x.wav",
        "uploads/short/0000000000000abcdefabcdef/x.wav",
        "uploads/x.wav",
        "",
        f"uploads/{ALICE}/{SOME_UPLOAD_ID}/x.wav",  # the layout before staging and library
        f"uploads/incoming/{ALICE}/{SOME_UPLOAD_ID}/",
        f"uploads/incoming/{ALICE}/{SOME_UPLOAD_ID}/..",
        f"uploads/incoming/{ALICE}/{SOME_UPLOAD_ID}/a/b.wav",
        f"uploads/incoming/{ALICE}/not-an-id/x.wav",
        f"uploads/library/{ALICE}/{SOME_UPLOAD_ID}/x.wav",
        f"uploads/outbox/{SOME_UPLOAD_ID}.json",
    ],
)
def test_parse_key_refuses_keys_it_did_not_build(key: str) -> None:
    """Only staging keys of this service parse: no other area, layout or shape."""
    assert keys.parse_key(PREFIX, key) is None


@pytest.mark.parametrize("area", [keys.STAGING, keys.LIBRARY])
def test_user_prefixes_never_nest(area: keys.Area) -> None:
    """In each area, one user's prefix never contains another's."""
    a, b = keys.user_prefix(PREFIX, ALICE, area), keys.user_prefix(PREFIX, BOB, area)
    assert not a.startswith(b) and not b.startswith(a)
