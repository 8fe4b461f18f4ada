"""A library folder as one listing shows it: the upload, and the facts and rendition beside it.

``service.core.sidecars`` names the files; this module reads pages of them back
into uploads, totals a user's library for the quotas, and removes a folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.core import keys, sidecars
from service.settings import Settings
from service.storage.client import Listed, Storage


@dataclass(frozen=True)
class Folder:
    """One upload id's objects in the library, as a listing met them."""

    upload_id: str
    upload: Listed | None  # None while (or if) only sidecars are there
    facts: sidecars.Facts | None
    peaks_key: str | None
    rendition_key: str | None
    last_key: str
    undecodable: bool = False  # promoted before uploads were decoded, and refused by decoding since


def _name(key: str) -> str:
    return key.rsplit("/", 1)[1]


def folders(objects: list[Listed], prefix: str) -> Iterator[Folder]:
    """The listed objects of one user's library, folder by folder, in the listing's order."""
    head = keys.area_prefix(prefix, keys.LIBRARY)
    current: list[Listed] = []
    current_folder: str | None = None
    for item in objects:
        folder = _folder_of(head, item.key)
        if current and folder != current_folder:
            yield _fold(current, prefix, current_folder)
            current = []
        if not current:
            current_folder = folder
        current.append(item)
    if current:
        yield _fold(current, prefix, current_folder)


def _folder_of(head: str, key: str) -> str | None:
    """The "owner/upload id" of a key under ``head`` (the library), else None."""
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) == 3 else None


def _fold(items: list[Listed], prefix: str, folder: str | None) -> Folder:
    upload = facts = peaks = rendition = None
    undecodable = False
    for item in items:
        name = _name(item.key)
        if name == sidecars.RENDITION:
            rendition = item.key
        elif name == sidecars.UNDECODABLE:
            undecodable = True
        elif (found := sidecars.parse_facts(name)) is not None:
            facts, peaks = found, item.key
        elif keys.parse_library_key(prefix, item.key) is not None:
            upload = item
    upload_id = folder.split("/")[1] if folder else ""
    return Folder(upload_id, upload, facts, peaks, rendition, items[-1].key, undecodable)


def page_of_folders(
    objects: list[Listed], prefix: str, limit: int, more: bool
) -> tuple[list[Folder], str | None]:
    """Up to ``limit`` complete folders of one LIST page, and the key the next page starts after.

    A folder's upload sorts after its sidecars, so the page's last folder is cut
    (and left for the next page) when the LIST stopped inside it.
    """
    found = list(folders(objects, prefix))
    if more and found and found[-1].upload is None:
        found.pop()
    complete = [f for f in found if f.upload is not None]
    shown = complete[:limit]
    if len(complete) > limit:
        return shown, shown[-1].last_key
    if more and found:
        return shown, found[-1].last_key
    return shown, None


def list_size(limit: int) -> int:
    """Keys one LIST asks for to show ``limit`` uploads with their sidecars (S3 answers at most 1000)."""
    return min(1000, limit * sidecars.FOLDER_OBJECTS)


def links(settings: Settings, upload_id: str, rendition: bool) -> tuple[str, str | None]:
    """(peaks path, rendition path or None when the upload has none), under the public URL's path."""
    base = f"{urlsplit(settings.public_url).path.rstrip('/')}/api/uploads/{upload_id}"
    return f"{base}/peaks", f"{base}/rendition" if rendition else None


async def library_totals(storage: Storage, prefix: str, owner: str) -> tuple[int, float]:
    """(bytes, seconds) a user's library holds now, uploads only: one LIST per thousand objects."""
    size, seconds = 0, 0.0
    after: str | None = None
    area = keys.user_prefix(prefix, owner, keys.LIBRARY)
    while True:
        page = await storage.list_objects(area, 1000, after)
        for item in page.objects:
            name = _name(item.key)
            if (facts := sidecars.parse_facts(name)) is not None:
                seconds += facts.duration_seconds
            elif not sidecars.is_sidecar(name):
                size += item.size
        if page.next_start_after is None:
            return size, seconds
        after = page.next_start_after


async def remove_sidecars(storage: Storage, prefix: str, owner: str, upload_id: str) -> None:
    """Delete what lies beside an upload (its facts and peaks, its rendition)."""
    found = await storage.list_keys(keys.upload_prefix(prefix, owner, upload_id, keys.LIBRARY), 10)
    for key in found.keys:
        if sidecars.is_sidecar(_name(key)):
            await storage.delete(key)
