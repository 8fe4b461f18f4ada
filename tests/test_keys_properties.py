"""Properties of key building and type normalising, over inputs hypothesis makes up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core import audio_types as audio
from service.core import keys

providers = st.sampled_from(["fake", "hub", "google", "github"])
subjects = st.text(min_size=1, max_size=300)
filenames = st.text(min_size=1, max_size=1024)
prefixes = st.sampled_from(["", "uploads/", "a/b/c/", "x" * 200 + "/"])
extensions = st.sampled_from([exts[0] for exts, _ in audio.AUDIO_TYPES.values()])


@given(prefixes, providers, subjects, filenames, extensions)
def test_keys_stay_under_the_users_prefix_and_are_valid_s3_keys(
    prefix: str, provider: str, subject: str, filename: str, extension: str
) -> None:
    """Whatever the filename, the key lies under the user's prefix, parses back, and fits S3's 1024 bytes."""
    owner = keys.user_id(provider, subject)
    upload_id = keys.new_upload_id()
    key = keys.build_key(prefix, owner, upload_id, keys.safe_filename(filename, extension))
    assert key.startswith(keys.user_prefix(prefix, owner))
    assert len(key.encode("utf-8")) <= 1024
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key)
    parsed = keys.parse_key(prefix, key)
    assert parsed is not None and parsed[:2] == (owner, upload_id)
    assert "/" not in parsed[2] and parsed[2] not in (".", "..")


@given(st.tuples(providers, subjects), st.tuples(providers, subjects))
def test_different_users_never_share_or_nest_a_prefix(a: tuple[str, str], b: tuple[str, str]) -> None:
    """Two different (provider, subject) pairs get ids that neither equal nor prefix each other."""
    first, second = keys.user_id(*a), keys.user_id(*b)
    if a != b:
        assert first != second
        assert not keys.user_prefix("uploads/", first).startswith(keys.user_prefix("uploads/", second))
    assert keys.USER_ID.match(first) and keys.USER_ID.match(second)


@given(st.text(max_size=300))
def test_normalising_a_type_gives_a_known_canonical_type_or_none(content_type: str) -> None:
    """Any header value maps to one of the canonical types, or to None; never to something new."""
    canonical = audio.canonical_type(content_type)
    assert canonical is None or canonical in audio.CANONICAL_TYPES


@given(
    st.sampled_from([name for c, (_, aliases) in audio.AUDIO_TYPES.items() for name in (c, *aliases)]),
    st.sampled_from(["", ";codecs=opus", "; charset=x", " "]),
    st.booleans(),
)
def test_aliases_parameters_and_case_normalise_to_the_same_type(name: str, params: str, upper: bool) -> None:
    """Case and parameters never change which canonical type a known name means, and it is idempotent."""
    given_type = (name.upper() if upper else name) + params
    canonical = audio.canonical_type(given_type)
    assert canonical == audio.canonical_type(name)
    assert canonical is not None and audio.canonical_type(canonical) == canonical
