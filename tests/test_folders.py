"""A listing page read back into library folders: each key cut once, with the answers parsing every key gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.core import keys, sidecars
from service.core.media_job import AudioFacts
from service.lifecycle import folders, library
from service.schemas import Upload
from service.settings import load_settings
from service.storage.client import Listed
from tests.support.settings import MINIMAL_SETTINGS

PREFIX = "uploads/"
OWNER = keys.user_id("dev", "alice")
AT = datetime(2026, 12, 7, 6, 30, 15, tzinfo=UTC)
FACTS = sidecars.facts_name(61.25, AudioFacts("opus", 48000, 2, 96000))


def listed(*names: str, owner: str = OWNER, upload_id: str | None = None) -> list[Listed]:
    upload_id = upload_id or keys.new_upload_id()
    return [
        Listed(keys.library_key(PREFIX, owner, upload_id, n), 10 + i, '"e"', AT) for i, n in enumerate(names)
    ]


def by_parsing_each_key(objects: list[Listed]) -> list[folders.Folder]:
    """The folders as parsing every key in full reads them (what ``folders.folders`` must equal)."""
    head = keys.area_prefix(PREFIX, keys.LIBRARY)

    def folder_of(key: str) -> str | None:
        parts = key[len(head) :].split("/") if key.startswith(head) else []
        return f"{parts[0]}/{parts[1]}" if len(parts) == 3 else None

    groups: list[tuple[str | None, list[Listed]]] = []
    for item in objects:
        folder = folder_of(item.key)
        if not groups or groups[-1][0] != folder:
            groups.append((folder, []))
        groups[-1][1].append(item)
    found = []
    for folder, items in groups:
        upload = facts = peaks = rendition = None
        undecodable = False
        for item in items:
            name = item.key.rsplit("/", 1)[1]
            if name == sidecars.RENDITION:
                rendition = item.key
            elif name == sidecars.UNDECODABLE:
                undecodable = True
            elif (parsed := sidecars.parse_facts(name)) is not None:
                facts, peaks = parsed, item.key
            elif keys.parse_library_key(PREFIX, item.key) is not None:
                upload = item
        upload_id = folder.split("/")[1] if folder else ""
        found.append(folders.Folder(upload_id, upload, facts, peaks, rendition, items[-1].key, undecodable))
    return found


def test_a_page_reads_into_folders_with_their_sidecars() -> None:
    """Facts and peaks, the rendition and the undecodable mark are found beside each upload, in order."""
    upload_id = keys.new_upload_id()
    first = listed(FACTS, sidecars.RENDITION, "take 1.wav", upload_id=upload_id)
    second = listed(sidecars.UNDECODABLE, "old.mp3")
    found = list(folders.folders(first + second, PREFIX))
    assert [f.upload for f in found] == [first[2], second[1]]
    assert found[0].facts == sidecars.parse_facts(FACTS)
    assert (found[0].peaks_key, found[0].rendition_key, found[0].last_key) == (
        first[0].key,
        first[1].key,
        first[2].key,
    )
    assert (found[1].facts, found[1].undecodable) == (None, True)
    assert found[0].upload_id == upload_id


@pytest.mark.parametrize(
    "objects",
    [
        pytest.param(listed(FACTS, "take.wav") + listed(FACTS), id="a page cut inside a folder"),
        pytest.param(listed(FACTS, "a.wav", "b.wav"), id="two names in one folder"),
        pytest.param(listed(FACTS, "take.wav", owner="NOT-A-USER"), id="a foreign owner"),
        pytest.param(listed(FACTS, "take.wav", upload_id="123"), id="a malformed upload id"),
        pytest.param(listed(".hidden.wav", ".audio-1-x.json"), id="sidecar-like names only"),
        pytest.param(
            [Listed(f"{PREFIX}library/{OWNER}/take.wav", 1, "", AT), *listed("x.wav")],
            id="a key one level too shallow",
        ),
        pytest.param(
            [*listed("x.wav"), Listed(f"{PREFIX}library/{OWNER}/{keys.new_upload_id()}/d/y.wav", 1, "", AT)],
            id="a key one level too deep",
        ),
        pytest.param(
            [Listed(f"{PREFIX}incoming/{OWNER}/{keys.new_upload_id()}/y.wav", 1, "", AT), *listed("x.wav")],
            id="a key outside the library",
        ),
    ],
)
def test_folders_are_what_parsing_every_key_gives(objects: list[Listed]) -> None:
    """Keys this service did not build hold no upload, exactly as ``keys.parse_library_key`` decides."""
    assert list(folders.folders(objects, PREFIX)) == by_parsing_each_key(objects)


@pytest.mark.parametrize(
    ("public_url", "path"), [("https://soundpost.example", ""), ("https://example.org/sound/", "/sound")]
)
@pytest.mark.parametrize("names", [(FACTS, sidecars.RENDITION, "take.wav"), (FACTS, "t.flac"), ("bare.ogg",)])
def test_a_described_folder_is_its_upload_with_the_facts_its_sidecars_state(
    public_url: str, path: str, names: tuple[str, ...]
) -> None:
    """The listed upload equals ``describe`` of its key, with the facts and the waveform and rendition paths."""
    settings = load_settings({**MINIMAL_SETTINGS, "SOUNDPOST_PUBLIC_URL": public_url})
    (folder,) = folders.folders(listed(*names), PREFIX)
    assert folder.upload is not None
    expected = library.describe(folder.upload, keys.LIBRARY, PREFIX)
    assert isinstance(expected, Upload)
    if folder.facts is not None:
        base = f"{path}/api/uploads/{folder.upload_id}"
        expected.duration_seconds, expected.audio = folder.facts.duration_seconds, folder.facts.audio
        expected.peaks_url = f"{base}/peaks"
        expected.rendition_url = f"{base}/rendition" if folder.rendition_key else None
    assert library.described(folder, settings) == expected
