"""A library folder as one listing shows it: the upload, and the facts and rendition beside it.

``service.core.sidecars`` names the files; this module reads pages of them back
into uploads, totals a user's library for the quotas, and removes a folder.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlsplit

from service.core import keys, sidecars
from service.settings import Settings
from service.storage.client import Listed, Storage


class Folder(NamedTuple):
    """One upload id's objects in the library, as a listing met them.

    A named tuple: a listing page makes one per upload, and a frozen dataclass costs three times more to make.
    """

    upload_id: str
    upload: Listed | None  # None while (or if) only sidecars are there
    facts: sidecars.Facts | None
    peaks_key: str | None
    rendition_key: str | None
    last_key: str
    undecodable: bool = False  # promoted before uploads were decoded, and refused by decoding since


def name_of(key: str) -> str:
    """The last segment of a key: an upload's filename, or a sidecar's name."""
    return key.rsplit("/", 1)[1]


def folders(objects: list[Listed], prefix: str) -> Iterator[Folder]:
    """The listed objects of one user's library, folder by folder, in the listing's order.

    Each key is cut once here (a page holds up to a thousand): its "owner/upload id"
    groups it, and the folder's two ids are checked once for all its objects.
    """
    head = keys.area_prefix(prefix, keys.LIBRARY)
    start = len(head)
    current: list[Listed] = []
    current_folder: str | None = None
    for item in objects:
        key = item.key
        folder = None
        if key.startswith(head):
            rest = key[start:]
            if rest.count("/") == 2:  # owner/upload id/name
                folder = rest[: rest.rindex("/")]
        if current and folder != current_folder:
            yield _fold(current, current_folder)
            current = []
        if not current:
            current_folder = folder
        current.append(item)
    if current:
        yield _fold(current, current_folder)


def _fold(items: list[Listed], folder: str | None) -> Folder:
    """One folder's objects: ``folder`` is their "owner/upload id" (None: keys this service did not build)."""
    upload = facts = peaks = rendition = None
    undecodable = False
    owner, _, upload_id = folder.partition("/") if folder else ("", "", "")
    # An upload is a key parse_library_key accepts: both ids well formed, a name that is not a sidecar's.
    ours = folder is not None and bool(keys.USER_ID.match(owner) and keys.UPLOAD_ID.match(upload_id))
    for item in items:
        name = name_of(item.key)
        if name.startswith(keys.SIDECAR_MARK):
            if name == sidecars.RENDITION:
                rendition = item.key
            elif name == sidecars.UNDECODABLE:
                undecodable = True
            elif (found := sidecars.parse_facts(name)) is not None:
                facts, peaks = found, item.key
        elif ours and name:
            upload = item
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
    base = f"{_uploads_path(settings.public_url)}{upload_id}"
    return f"{base}/peaks", f"{base}/rendition" if rendition else None


@functools.lru_cache(maxsize=8)
def _uploads_path(public_url: str) -> str:
    """``/api/uploads/`` under the public URL's path: parsed once, not once per listed upload."""
    return f"{urlsplit(public_url).path.rstrip('/')}/api/uploads/"


async def library_totals(storage: Storage, prefix: str, owner: str) -> tuple[int, float]:
    """(bytes, seconds) a user's library holds now, uploads only: one LIST per thousand objects."""
    size, seconds = 0, 0.0
    after: str | None = None
    area = keys.user_prefix(prefix, owner, keys.LIBRARY)
    while True:
        page = await storage.list_objects(area, 1000, after)
        for item in page.objects:
            name = name_of(item.key)
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
        if sidecars.is_sidecar(name_of(key)):
            await storage.delete(key)
