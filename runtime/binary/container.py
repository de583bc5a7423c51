"""The container: header, section table and sections, packed and parsed.

:func:`pack` lays sections out (the writer); :func:`parse` checks a file's
header, table and checksums and returns each section's bytes (the reader);
:func:`describe` reports the table without judging the contents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from runtime.binary.format import (
    ENTRY,
    FLAG_REFERENCE_STRIPPED,
    HEADER,
    KNOWN_FLAGS,
    MAGIC,
    MAX_SECTIONS,
    REQUIRED_SECTIONS,
    SECTION_ALIGN,
    VERSION,
    BinaryFormatError,
    Section,
    align,
    crc32,
)


@dataclass(frozen=True)
class Entry:
    """One section-table entry as read from a file."""

    id: int
    offset: int
    length: int
    crc: int

    @property
    def name(self) -> str:
        return Section(self.id).name if self.id in Section._value2member_map_ else f"unknown section {self.id}"


def pack(sections: Sequence[tuple[Section, bytes]], flags: int = 0) -> bytes:
    """The file holding ``sections`` (in this order), each aligned and checksummed."""
    table_end = HEADER.size + ENTRY.size * len(sections)
    offsets, offset = [], align(table_end)
    for _, payload in sections:
        offsets.append(offset)
        offset = align(offset + len(payload))
    last = offsets[-1] + len(sections[-1][1]) if sections else table_end
    table = b"".join(ENTRY.pack(int(sid), 0, off, len(payload), crc32(payload), 0)
                     for (sid, payload), off in zip(sections, offsets))
    head = HEADER.pack(MAGIC, VERSION, flags, len(sections), last, 0, 0)[:-4]
    pieces, end = [head, crc32(head + table).to_bytes(4, "little"), table], table_end
    for (_, payload), off in zip(sections, offsets):  # joined once: a model's weights are copied once
        pieces += [bytes(off - end), payload]
        end = off + len(payload)
    return b"".join(pieces)


def check_start(head: bytes | memoryview, size: int) -> None:
    """Check the first bytes of a ``size``-byte file: long enough, the magic,
    the version, and the length the header declares; a reader calls this
    before it reads (and allocates) the rest."""
    if len(head) < HEADER.size:
        raise BinaryFormatError(f"header: the file is {size} bytes, shorter than the {HEADER.size}-byte header "
                                "(truncated, or not a Tessera binary)")
    magic, version, _, _, length, _, _ = HEADER.unpack_from(head)
    if magic != MAGIC:
        raise BinaryFormatError(f"header: bad magic {bytes(magic)!r}: not a Tessera binary (expected {MAGIC!r})")
    if version != VERSION:
        raise BinaryFormatError(f"header: unknown format version {version} (this runtime reads version {VERSION})")
    if length != size:
        what = "truncated" if length > size else "followed by extra bytes"
        raise BinaryFormatError(f"header: the file is {size} bytes but its header says {length}: {what}")


def _header(data: memoryview) -> tuple[int, int, list[Entry]]:
    """(version, flags, entries) after checking the header and table bytes."""
    check_start(data[:HEADER.size], len(data))
    _, version, flags, count, _, reserved, header_crc = HEADER.unpack_from(data)
    if not 1 <= count <= MAX_SECTIONS:
        raise BinaryFormatError(f"header: section count {count} is outside [1, {MAX_SECTIONS}]")
    table_end = HEADER.size + ENTRY.size * count
    if table_end > len(data):
        raise BinaryFormatError(f"header: the section table ({count} entries) runs past the end of the file")
    expected = crc32(bytes(data[:HEADER.size - 4]) + bytes(data[HEADER.size:table_end]))
    if header_crc != expected:
        raise BinaryFormatError(f"header: CRC32 mismatch over the header and section table "
                                f"(stored {header_crc:#010x}, computed {expected:#010x})")
    if reserved or flags & ~KNOWN_FLAGS:
        raise BinaryFormatError(f"header: reserved bits set (flags {flags:#06x}, reserved {reserved:#x})")
    entries = []
    for i in range(count):
        sid, zero, offset, size, crc, zero2 = ENTRY.unpack_from(data, HEADER.size + ENTRY.size * i)
        if zero or zero2:
            raise BinaryFormatError(f"section table[{i}]: reserved fields are not zero")
        entries.append(Entry(sid, offset, size, crc))
    return version, flags, entries


def _check_layout(data: memoryview, entries: list[Entry]) -> None:
    """Known ids, no duplicates, inside the file, aligned, in order without
    overlap, zero bytes between sections, the required ones present."""
    seen: set[int] = set()
    position = HEADER.size + ENTRY.size * len(entries)
    for i, entry in enumerate(entries):
        where = f"section table[{i}] ({entry.name})"
        if entry.id not in Section._value2member_map_:
            raise BinaryFormatError(f"{where}: unknown section id {entry.id}")
        if entry.id in seen:
            raise BinaryFormatError(f"{where}: duplicate section")
        seen.add(entry.id)
        if entry.offset > len(data) or entry.length > len(data) - entry.offset:
            raise BinaryFormatError(f"{where}: [{entry.offset}, +{entry.length}) lies outside the "
                                    f"{len(data)}-byte file")
        if entry.offset % SECTION_ALIGN:
            raise BinaryFormatError(f"{where}: offset {entry.offset} is not a multiple of {SECTION_ALIGN}")
        if entry.offset < position:
            raise BinaryFormatError(f"{where}: offset {entry.offset} overlaps the table or the previous section "
                                    f"(which end at {position})")
        if any(data[position:entry.offset]):
            raise BinaryFormatError(f"{where}: the padding before the section is not zero")
        position = entry.offset + entry.length
    if any(data[position:]):
        raise BinaryFormatError("the padding after the last section is not zero")
    missing = [s.name for s in REQUIRED_SECTIONS if s not in seen]
    if missing:
        raise BinaryFormatError(f"section table: required sections {missing} are missing")


def parse(data: memoryview) -> tuple[int, dict[Section, memoryview]]:
    """(flags, each section's bytes) of a file whose header, table, layout and
    checksums are all valid."""
    _, flags, entries = _header(data)
    _check_layout(data, entries)
    sections = {}
    for entry in entries:
        payload = data[entry.offset:entry.offset + entry.length]
        computed = crc32(payload)
        if computed != entry.crc:
            raise BinaryFormatError(f"section {entry.name}: CRC32 mismatch (stored {entry.crc:#010x}, "
                                    f"computed {computed:#010x}): the file is corrupt")
        sections[Section(entry.id)] = payload
    stripped = bool(flags & FLAG_REFERENCE_STRIPPED)
    if stripped == (Section.REFERENCE in sections):
        raise BinaryFormatError("header: the reference-stripped flag disagrees with the REFERENCE section's "
                                f"{'presence' if stripped else 'absence'}")
    return flags, sections


def describe(data: memoryview) -> dict:
    """The header and each section's id, name, offset, length and whether its
    CRC matches (the header itself must be valid)."""
    version, flags, entries = _header(data)
    sections = []
    for entry in entries:
        inside = entry.offset <= len(data) and entry.length <= len(data) - entry.offset
        ok = inside and crc32(data[entry.offset:entry.offset + entry.length]) == entry.crc
        sections.append({"id": entry.id, "name": entry.name, "offset": entry.offset, "length": entry.length,
                         "crc_ok": ok})
    return {"version": version, "flags": flags, "size": len(data), "sections": sections}
