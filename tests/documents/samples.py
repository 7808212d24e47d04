"""Documents made by the tests themselves: PDFs written by hand (text pages, an outline, actions,
object streams), DOCX files from python-docx, a minimal OLE compound file holding a VBA project
structure, zip bombs, the EICAR test file. Nothing is downloaded."""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
import zlib

import docx

# Built from parts so that this source file is not itself the EICAR test file's signature.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


# --- PDF ----------------------------------------------------------------------------------------


def _pdf_text(value: str) -> bytes:
    return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def build_pdf(
    pages: list[list[str]],
    *,
    outline: list[tuple[str, int]] = (),
    catalog_extra: bytes = b"",
    extra_objects: dict[int, bytes] | None = None,
    title: str | None = None,
) -> bytes:
    """A PDF whose page i shows the lines `pages[i]` (Helvetica, one line each), with an outline
    of (title, 0-based page) entries, `catalog_extra` added to the catalog dictionary and
    `extra_objects` (number → body) appended; cross-reference table and offsets exact."""
    objects: dict[int, bytes] = {}
    font = 3
    first_page = 10
    page_numbers = [first_page + 2 * i for i in range(len(pages))]
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    kids = b" ".join(b"%d 0 R" % number for number in page_numbers)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages))
    for number, lines in zip(page_numbers, pages, strict=True):
        content = b"BT /F1 11 Tf 14 TL 72 720 Td " + b" ".join(b"(%s) '" % _pdf_text(line) for line in lines) + b" ET"
        objects[number] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (number + 1)
        )
        objects[number + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
    catalog = b"<< /Type /Catalog /Pages 2 0 R"
    if outline:
        first_item = 200
        items = list(range(first_item, first_item + len(outline)))
        objects[4] = b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (items[0], items[-1], len(items))
        for position, (number, (text, page)) in enumerate(zip(items, outline, strict=True)):
            links = b""
            if position > 0:
                links += b" /Prev %d 0 R" % items[position - 1]
            if position < len(items) - 1:
                links += b" /Next %d 0 R" % items[position + 1]
            objects[number] = b"<< /Title (%s) /Parent 4 0 R /Dest [%d 0 R /Fit]%s >>" % (
                _pdf_text(text),
                page_numbers[page],
                links,
            )
        catalog += b" /Outlines 4 0 R"
    objects[1] = catalog + b" " + catalog_extra + b" >>"
    if title:
        objects[5] = b"<< /Title (%s) >>" % _pdf_text(title)
    objects.update(extra_objects or {})

    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, objects[number]))
    size = max(objects) + 1
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for number in range(1, size):
        if number in offsets:
            out.write(b"%010d 00000 n \n" % offsets[number])
        else:
            out.write(b"0000000000 65535 f \n")
    info = b" /Info 5 0 R" if title else b""
    out.write(b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (size, info, xref))
    return out.getvalue()


def object_stream(objects: dict[int, bytes]) -> bytes:
    """An object stream (/Type /ObjStm, FlateDecode) holding `objects` (number → body)."""
    header = b""
    body = b""
    for number, content in objects.items():
        header += b"%d %d " % (number, len(body))
        body += content + b"\n"
    data = zlib.compress(header + body)
    return b"<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (
        len(objects),
        len(header),
        len(data),
        data,
    )


# --- DOCX and macros ----------------------------------------------------------------------------


def build_docx(
    sections: list[tuple[str, list[str]]], *, title: str | None = None, table: list[list[str]] = ()
) -> bytes:
    """A DOCX with a Heading 1 and its paragraphs per section, then an optional table."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def build_ole(streams: dict[str, bytes]) -> bytes:
    """A minimal OLE compound file (MS-CFB version 3, 512-byte sectors) holding `streams`, named
    by path (``"VBA/dir"``: storage ``VBA``, stream ``dir``); every stream is padded to 4096
    bytes so it lives in regular sectors (no mini stream)."""
    endofchain, freesect, fatsect, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    # the tree: root → storages and streams; entries of one parent chained as right siblings,
    # in the order MS-CFB compares names (length first, then upper case)
    entries: list[dict] = [{"name": "Root Entry", "type": 5, "children": [], "data": b""}]
    storages: dict[str, int] = {"": 0}
    for path, data in streams.items():
        parent = ""
        for part in path.split("/")[:-1]:
            key = f"{parent}/{part}" if parent else part
            if key not in storages:
                storages[key] = len(entries)
                entries.append({"name": part, "type": 1, "children": [], "data": b""})
                entries[storages[parent]]["children"].append(storages[key])
            parent = key
        entries.append({"name": path.split("/")[-1], "type": 2, "children": [], "data": data.ljust(4096, b"\0")})
        entries[storages[parent]]["children"].append(len(entries) - 1)

    sector = 512
    directory_sectors = -(-len(entries) * 128 // sector)
    data_start = 1 + directory_sectors
    fat = [fatsect] + [number + 2 for number in range(directory_sectors - 1)] + [endofchain]
    next_sector = data_start
    for entry in entries:
        if entry["type"] == 2:
            count = len(entry["data"]) // sector
            entry["start"] = next_sector
            fat += [next_sector + i + 1 for i in range(count - 1)] + [endofchain]
            next_sector += count
    assert len(fat) <= 128
    fat += [freesect] * (128 - len(fat))

    def key(index: int) -> tuple[int, str]:
        return (len(entries[index]["name"]), entries[index]["name"].upper())

    for entry in entries:
        entry["children"].sort(key=key)
        entry["right"] = nostream
    for entry in entries:
        children = entry["children"]
        for left, right in itertools.pairwise(children):
            entries[left]["right"] = right
        entry["child"] = children[0] if children else nostream

    directory = b""
    for entry in entries:
        name = entry["name"].encode("utf-16-le") + b"\0\0"
        directory += struct.pack(
            "<64sHBBIII16sIQQIQ",
            name,
            len(name),
            entry["type"],
            1,  # black
            nostream,
            entry["right"],
            entry["child"],
            b"\0" * 16,
            0,
            0,
            0,
            entry.get("start", endofchain if entry["type"] != 2 else 0),
            len(entry["data"]),
        )
    unused = struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, nostream, nostream, nostream, b"\0" * 16, 0, 0, 0, 0, 0)
    directory = directory.ljust(directory_sectors * sector, b"\0")
    directory = b"".join(
        directory[i : i + 128] if directory[i : i + 128].strip(b"\0") else unused for i in range(0, len(directory), 128)
    )

    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\0" * 16,
        0x003E,
        0x0003,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,  # directory sectors (0 in version 3)
        1,  # FAT sectors
        1,  # first directory sector
        0,
        4096,  # mini stream cutoff
        endofchain,  # first mini FAT sector
        0,
        endofchain,  # first DIFAT sector
        0,
    )
    header += struct.pack("<I", 0) + struct.pack("<I", freesect) * 108
    body = struct.pack("<128I", *fat) + directory
    body += b"".join(entry["data"] for entry in entries if entry["type"] == 2)
    return header + body


def vba_project() -> bytes:
    """A vbaProject.bin with the structure of a VBA project (MS-OVBA 2.2.1: a PROJECT stream, a
    VBA storage with _VBA_PROJECT and dir streams): what olevba takes for macros."""
    return build_ole(
        {
            "PROJECT": b'ID="{00000000-0000-0000-0000-000000000000}"\r\nDocument=ThisDocument/&H00000000\r\n',
            "VBA/_VBA_PROJECT": b"\xcc\x61\xff\xff\x00\x00\x00",
            "VBA/dir": b"\x01",
            "VBA/ThisDocument": b'Attribute VB_Name = "ThisDocument"\r\nSub AutoOpen()\r\nEnd Sub\r\n',
        }
    )


def with_member(archive: bytes, name: str, data: bytes) -> bytes:
    """A copy of a zip archive with one more member."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member, source.read(member))
        target.writestr(name, data)
    return out.getvalue()


def zip_bomb(uncompressed_bytes: int = 64 * 1024 * 1024) -> bytes:
    """A zip with one member of `uncompressed_bytes` zeros, deflated (about 1000:1)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("zeros.txt", "w") as member:
        block = b"\0" * (1024 * 1024)
        for _ in range(uncompressed_bytes // len(block)):
            member.write(block)
    return out.getvalue()
