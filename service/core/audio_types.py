"""Audio media types: one canonical name per format, its aliases and file extensions.

Browsers disagree on what to call the same file (``audio/x-wav``, ``audio/wave``,
``audio/webm;codecs=opus``...). The policy pins one exact ``Content-Type``, so the
service normalises whatever the browser says to one canonical type first.
"""

from __future__ import annotations

from service.core.keys import split_extension

# canonical type -> (extensions, aliases). The first extension is the one added
# to a filename that has none.
AUDIO_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "audio/mpeg": (
        (".mp3", ".mpga", ".mp2", ".mpeg"),
        ("audio/mp3", "audio/mpeg3", "audio/x-mpeg", "audio/x-mp3", "audio/mpg", "audio/x-mpeg-3"),
    ),
    "audio/mp4": ((".m4a", ".mp4", ".m4b"), ("audio/x-m4a", "audio/m4a", "audio/x-mp4", "audio/mp4a-latm")),
    "audio/aac": ((".aac", ".adts"), ("audio/x-aac", "audio/aacp", "audio/x-hx-aac-adts")),
    "audio/wav": ((".wav", ".wave"), ("audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/x-pn-wav")),
    "audio/webm": ((".webm", ".weba"), ()),
    "audio/ogg": ((".ogg", ".oga"), ("audio/x-ogg", "application/ogg", "audio/vorbis")),
    "audio/opus": ((".opus",), ("audio/x-opus",)),
    "audio/flac": ((".flac",), ("audio/x-flac",)),
}

CANONICAL_TYPES: tuple[str, ...] = tuple(AUDIO_TYPES)

_BY_NAME: dict[str, str] = {
    name: canonical for canonical, (_, aliases) in AUDIO_TYPES.items() for name in (canonical, *aliases)
}


def canonical_type(content_type: str) -> str | None:
    """The canonical audio type for a Content-Type header value, or None if it is not audio we know.

    Parameters (``;codecs=opus``) and case are dropped: the stored object is
    described by the container, not by the codec the browser guessed.
    """
    essence = content_type.split(";", 1)[0].strip().lower()
    return _BY_NAME.get(essence)


def extensions_for(canonical: str) -> tuple[str, ...]:
    return AUDIO_TYPES[canonical][0]


def extension_agrees(extension: str, canonical: str) -> bool:
    """Whether a file extension is one this type is stored under.

    ``.mp4``/``.m4a`` and ``.ogg``/``.opus`` overlap in practice (Opus usually
    travels in Ogg), so those pairs are accepted both ways.
    """
    ext = extension.lower()
    if ext in extensions_for(canonical):
        return True
    related = {"audio/ogg": ("audio/opus",), "audio/opus": ("audio/ogg",)}
    return any(ext in extensions_for(other) for other in related.get(canonical, ()))


_BY_EXTENSION: dict[str, str] = {
    ext: canonical for canonical, (extensions, _) in AUDIO_TYPES.items() for ext in extensions
}


def type_for_extension(extension: str) -> str | None:
    """The one canonical type a file extension names (each extension belongs to exactly one type).

    Promotion stores a library object under the type its name's extension names,
    so a listing can state every item's type from its key alone, without a HEAD.
    """
    return _BY_EXTENSION.get(extension.lower())


def library_type(declared: str, filename: str) -> str | None:
    """The canonical type to store: the declared one, or the one the extension names where they overlap.

    Ogg and Opus share extensions; the library follows the extension so a
    listing can state the type from the key alone.
    """
    canonical = canonical_type(declared)
    if canonical is None:
        return None
    named = type_for_extension(split_extension(filename)[1])
    return (
        named
        if named is not None and extension_agrees(split_extension(filename)[1], canonical)
        else canonical
    )
