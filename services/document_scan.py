"""Documents (issue 15): the security scan an upload passes before anything reads it.

Two engines, both run on the stored bytes:

- **Built-in structural checks** (engine ``charter``), which need no daemon: the EICAR test file
  (alone or as a small member of a zip); zip containers (DOCX and any other zip) judged from their
  central directory without extracting anything — too many members, a total uncompressed size or
  a compression ratio past the limits (`ScanLimits`), or entries whose compressed sizes add up to
  more than the archive (overlapping entries, David Fifield's "non-recursive zip bomb"); PDF
  actions and attachments (the names ``/JavaScript``, ``/JS``, ``/Launch``, ``/EmbeddedFile``,
  ``/EmbeddedFiles``, ``/RichMedia`` anywhere in the file, read with their ``#xx`` escapes
  decoded so ``/J#61vaScript`` counts, including inside FlateDecode object streams); Office
  macros (oletools' olevba `VBA_Parser`: a VBA project in an OLE file or inside a zip, e.g. a
  DOCM's ``word/vbaProject.bin``, or XLM macros).
- **ClamAV** through clamd (engine ``clamav``, the `VirusScanner` port: `adapters/clamd.py`
  `ClamdScanner` speaks its INSTREAM protocol) when CLAMD_URL is configured.

Verdicts: ``clean``, ``infected`` (with the engine and the signature: ClamAV's name, or
``Charter.<Kind>.<What>`` for the built-in checks, e.g. ``Charter.PDF.JavaScript``), or
``unscannable`` (a container or PDF whose structure cannot be read or checked, e.g. a zip
without a readable central directory or an encrypted PDF with object streams, or clamd's own
refusal such as its size limit). What happens to an unscannable document is a policy
(`is_blocked`, block by default: OWASP File Upload Cheat Sheet). A clamd that cannot be reached is
not a verdict: `ScannerUnavailable` is raised so the job retries later.

Zip sizes are those the central directory declares: Python's zipfile (which python-docx reads
through) never yields more than a member's declared size, so the declared sizes bound what
extraction can inflate. Nested archives are not opened (ClamAV does that).
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)

BUILTIN_ENGINE = "charter"

# Built from parts so that this source file is not itself the EICAR test file's signature.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature"
"""The name ClamAV gives the EICAR test file; the built-in check reports the same."""

_EICAR_MAX_BYTES = 128  # the EICAR file may be followed by whitespace up to 128 bytes in all (eicar.org)
_EICAR_PADDING = b" \t\r\n\x1a"

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"

PDF_ACTIVE_NAMES = ("JavaScript", "JS", "Launch", "EmbeddedFile", "EmbeddedFiles", "RichMedia")
"""PDF names that make a PDF infected, first match reported (ISO 32000-1: 12.6.4.16 JavaScript
actions, 12.6.4.5 launch actions, 7.11.4 embedded file streams, and Adobe's RichMedia)."""

_PDF_NAME = re.compile(rb"/([^\x00\t\n\x0c\r /%()<>\[\]{}]*)")
_PDF_HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_PDF_STREAM = re.compile(rb"stream(?:\r\n|\n|\r)")
_PDF_OBJ = re.compile(rb"\d+\s+\d+\s+obj\b")


class Verdict(StrEnum):
    """A scan's verdict."""

    CLEAN = "clean"
    INFECTED = "infected"
    UNSCANNABLE = "unscannable"


@dataclass(frozen=True)
class ScanResult:
    """What a scan found.

    Attributes:
        verdict: clean, infected or unscannable.
        engine: the engine that decided (``charter`` or ``clamav``); for a clean file every engine
            that ran, joined by ``+`` (``charter+clamav``).
        signature: what was found (infected only), e.g. ``Eicar-Test-Signature``,
            ``Charter.PDF.JavaScript``, ``Charter.Zip.Bomb``, ``Charter.Office.Macro``.
        detail: a sentence for people (infected and unscannable), never file contents.
    """

    verdict: Verdict
    engine: str
    signature: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ScanLimits:
    """Limits of the structural checks.

    Attributes:
        max_zip_members: the most entries a zip may have.
        max_zip_total_bytes: the most bytes all entries may declare uncompressed.
        max_zip_ratio: the highest uncompressed/compressed ratio of an entry, and of the whole
            archive (DEFLATE's best is about 1032; ordinary documents stay well under 100).
        zip_ratio_min_bytes: entries that declare fewer uncompressed bytes are not held to the ratio
            (a kilobyte of repeated spaces compresses 100:1 harmlessly).
        max_pdf_inflated_bytes: the most bytes the PDF check inflates from object streams; a PDF
            needing more is unscannable.
    """

    max_zip_members: int = 10_000
    max_zip_total_bytes: int = 256 * 1024 * 1024
    max_zip_ratio: float = 200.0
    zip_ratio_min_bytes: int = 1024 * 1024
    max_pdf_inflated_bytes: int = 64 * 1024 * 1024


# --- the port ----------------------------------------------------------------------------------


class ScanOutcome(Protocol):
    """A virus scanner's answer: `verdict` is ``clean``, ``infected`` or ``unscannable``;
    `signature` names what was found; `detail` says why a file could not be scanned."""

    @property
    def verdict(self) -> str: ...

    @property
    def signature(self) -> str | None: ...

    @property
    def detail(self) -> str | None: ...


class VirusScanner(Protocol):
    """An antivirus engine (`adapters/clamd.py` `ClamdScanner`; `FakeVirusScanner` in tests)."""

    @property
    def engine(self) -> str:
        """The engine's name as verdicts report it (``clamav``)."""
        ...

    def scan(self, stream: BinaryIO) -> ScanOutcome:
        """Scan the bytes read from `stream` (from its current position to its end).

        Raises OSError (ConnectionError, TimeoutError, …) when the engine cannot be reached or
        stops answering: that is no verdict."""
        ...


class ScannerUnavailable(Exception):
    """The configured virus scanner could not be reached or stopped answering: no verdict. Not a
    `DomainError`: the scan job lets it propagate so the job engine retries after its backoff."""


# --- the built-in checks -------------------------------------------------------------------------


def _is_eicar(data: bytes) -> bool:
    return len(data) <= _EICAR_MAX_BYTES and data.startswith(EICAR) and not data[len(EICAR) :].strip(_EICAR_PADDING)


def _infected(signature: str, detail: str) -> ScanResult:
    return ScanResult(Verdict.INFECTED, BUILTIN_ENGINE, signature, detail)


def _unscannable(detail: str) -> ScanResult:
    return ScanResult(Verdict.UNSCANNABLE, BUILTIN_ENGINE, None, detail)


def check_zip(data: bytes, *, limits: ScanLimits) -> ScanResult | None:
    """The zip check: judged from the central directory, nothing is extracted (only members of at
    most 128 bytes are read, for the EICAR file).

    Args:
        data: a zip archive's bytes (e.g. a DOCX).
        limits: the member count, total size and ratio limits.

    Returns:
        None when the archive is within the limits; an infected result (``Charter.Zip.Bomb``)
        past them or with overlapping entries, ``Eicar-Test-Signature`` for an EICAR member; an
        unscannable one when the central directory cannot be read or a member is encrypted.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > limits.max_zip_members:
                return _infected("Charter.Zip.Bomb", f"The archive has more than {limits.max_zip_members} entries.")
            total = sum(member.file_size for member in members)
            compressed = sum(member.compress_size for member in members)
            if total > limits.max_zip_total_bytes:
                return _infected(
                    "Charter.Zip.Bomb",
                    f"The archive expands to {total} bytes, more than {limits.max_zip_total_bytes}.",
                )
            if compressed > len(data):
                return _infected("Charter.Zip.Bomb", "The archive's entries overlap (they share compressed data).")
            for member in members:
                if member.file_size >= limits.zip_ratio_min_bytes and (
                    member.file_size > limits.max_zip_ratio * max(member.compress_size, 1)
                ):
                    return _infected(
                        "Charter.Zip.Bomb",
                        f"An entry expands more than {limits.max_zip_ratio:g} times its compressed size.",
                    )
            if total >= limits.zip_ratio_min_bytes and total > limits.max_zip_ratio * max(compressed, 1):
                return _infected(
                    "Charter.Zip.Bomb", f"The archive expands more than {limits.max_zip_ratio:g} times its size."
                )
            for member in members:
                if member.flag_bits & 0x1:
                    return _unscannable("The archive has an encrypted entry.")
                if 0 < member.file_size <= _EICAR_MAX_BYTES and _is_eicar(archive.read(member)):
                    return _infected(
                        EICAR_SIGNATURE, f"The archive's entry {member.filename!r} is the EICAR test file."
                    )
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        EOFError,
        zlib.error,
    ) as error:
        return _unscannable(f"The archive cannot be read ({type(error).__name__}).")
    return None


def _pdf_names(data: bytes) -> set[str]:
    names = set()
    for raw in set(_PDF_NAME.findall(data)):
        if b"#" in raw:
            raw = _PDF_HEX_ESCAPE.sub(lambda escape: bytes([int(escape.group(1), 16)]), raw)
        names.add(raw.decode("latin-1"))
    return names


@dataclass
class _PdfParts:
    """A PDF's bytes split for the name scan: `outside` (the file without its stream bodies, where
    dictionaries are), `bodies` (the raw stream bodies), `objects` (inflated object streams),
    and `problem`: why an object stream could not be read."""

    outside: list[bytes]
    bodies: list[bytes]
    objects: list[bytes]
    problem: str | None = None


def _pdf_parts(data: bytes, *, budget: int) -> _PdfParts:
    """Split a PDF at its ``stream`` … ``endstream`` bodies and inflate the object streams
    (/Type /ObjStm, the only streams that hold dictionaries). A body runs to the next
    ``endstream`` (or the end of a truncated file)."""
    parts = _PdfParts(outside=[], bodies=[], objects=[])
    position = 0
    for match in _PDF_STREAM.finditer(data):
        if match.start() < position or data[max(0, match.start() - 3) : match.start()] == b"end":
            continue
        parts.outside.append(data[position : match.start()])
        end = data.find(b"endstream", match.end())
        body = data[match.end() : end if end >= 0 else len(data)]
        parts.bodies.append(body)
        position = end + len(b"endstream") if end >= 0 else len(data)
        objects = list(_PDF_OBJ.finditer(data, max(0, match.start() - 4096), match.start()))
        names = _pdf_names(data[objects[-1].end() if objects else max(0, match.start() - 4096) : match.start()])
        if "ObjStm" not in names or parts.problem:
            continue
        filters = names & {"ASCIIHexDecode", "ASCII85Decode", "LZWDecode", "RunLengthDecode", "Crypt", "AHx", "A85"}
        if filters:
            parts.problem = f"an object stream uses {sorted(filters)[0]}"
        elif "FlateDecode" not in names and "Fl" not in names:
            parts.objects.append(body)
        else:
            try:
                content = zlib.decompressobj().decompress(body, budget + 1)
            except zlib.error:
                parts.problem = "an object stream cannot be inflated"
                continue
            budget -= len(content)
            if budget < 0:
                parts.problem = "its object streams inflate past the limit"
            else:
                parts.objects.append(content)
    parts.outside.append(data[position:])
    return parts


def check_pdf(data: bytes, *, limits: ScanLimits) -> ScanResult | None:
    """The PDF check: actions and attachments named anywhere in the file.

    A byte scan rather than a parse, so a malformed or truncated PDF is still checked: the names
    (``/Name``, ``#xx`` escapes decoded) of the file's dictionaries and of its FlateDecode object
    streams are compared with `PDF_ACTIVE_NAMES`. Raw stream bodies (images, fonts, page
    contents) are searched for the long names only: ``/JS`` is three bytes that compressed data
    holds by chance about once in 300 MB, and a working ``/JS`` key comes with ``/S /JavaScript``.

    Args:
        data: the PDF's bytes.
        limits: `max_pdf_inflated_bytes` bounds the inflated object streams.

    Returns:
        None when no such name appears; infected (``Charter.PDF.<Name>``) when one does;
        unscannable when object streams cannot be read (encrypted, another filter, past the
        inflation limit).
    """
    parts = _pdf_parts(data, budget=limits.max_pdf_inflated_bytes)
    names: set[str] = set()
    for segment in (*parts.outside, *parts.objects):
        names |= _pdf_names(segment)
    for body in parts.bodies:
        names |= {name for name in _pdf_names(body) if len(name) > 2}
    for name in PDF_ACTIVE_NAMES:
        if name in names:
            return _infected(f"Charter.PDF.{name}", f"The PDF contains /{name}.")
    if "Encrypt" in names and "ObjStm" in names:
        return _unscannable("The PDF is encrypted and keeps objects in object streams, which cannot be checked.")
    if parts.problem:
        return _unscannable(f"The PDF cannot be checked: {parts.problem}.")
    return None


def check_macros(data: bytes) -> ScanResult | None:
    """The Office macro check (oletools' olevba `VBA_Parser`), for OLE files and zip containers.

    Args:
        data: an OLE compound file or a zip (DOCX, DOCM, …) that passed `check_zip`.

    Returns:
        None without macros; infected (``Charter.Office.Macro``: VBA, ``Charter.Office.XLM``:
        Excel 4 macros) with them; unscannable when olevba cannot read the file.
    """
    from oletools.olevba import VBA_Parser  # heavy, and only the scan job needs it

    parser = None
    try:
        parser = VBA_Parser("document", data=data)
        if parser.detect_vba_macros():
            return _infected("Charter.Office.Macro", "The document contains VBA macros.")
        if parser.type != "Text" and parser.detect_xlm_macros():
            return _infected("Charter.Office.XLM", "The document contains Excel 4 (XLM) macros.")
    except Exception as error:  # olevba raises many kinds on malformed input; none may escape the scan
        log.info("olevba could not read a document: %s", type(error).__name__)
        return _unscannable(f"The document's macros cannot be checked ({type(error).__name__}).")
    finally:
        if parser is not None:
            parser.close()
    return None


def structural_scan(stream: BinaryIO, *, limits: ScanLimits | None = None) -> ScanResult:
    """The built-in checks (engine ``charter``) on a document's bytes.

    Args:
        stream: the document, read from its current position to its end (the whole file is read
            into memory: uploads are bounded by DOCUMENT_MAX_BYTES).
        limits: the zip and PDF limits (default `ScanLimits()`).

    Returns:
        The first finding of: EICAR, the zip check (zip files), the macro check (zip and OLE
        files), the PDF check (files with ``%PDF-`` in their first kilobyte); else clean.
        Never raises for what the bytes are.
    """
    limits = limits or ScanLimits()
    data = stream.read()
    if _is_eicar(data):
        return _infected(EICAR_SIGNATURE, "The file is the EICAR test file.")
    found: ScanResult | None = None
    try:
        if data.startswith(_ZIP_MAGIC) or data.startswith(b"PK\x05\x06"):
            found = check_zip(data, limits=limits) or check_macros(data)
        elif data.startswith(_OLE_MAGIC):
            found = check_macros(data)
        elif b"%PDF-" in data[:1024]:
            found = check_pdf(data, limits=limits)
    except Exception as error:  # a check that trips over the bytes: what it could not check is unscannable
        log.warning("a structural check failed: %s", type(error).__name__, exc_info=True)
        return _unscannable(f"The file's structure cannot be checked ({type(error).__name__}).")
    return found or ScanResult(Verdict.CLEAN, BUILTIN_ENGINE)


def scan_document(
    *, stream: BinaryIO, scanner: VirusScanner | None = None, limits: ScanLimits | None = None
) -> ScanResult:
    """Scan a stored document: the built-in checks, then ClamAV when a scanner is configured.

    Args:
        stream: the document, seekable, from its start (e.g. `FileStore.open(key)`).
        scanner: the virus scanner (clamd, when CLAMD_URL is set), or None for the built-in checks
            only.
        limits: the built-in checks' limits.

    Returns:
        The built-in checks' result when it is not clean (clamd is then not asked); else the
        scanner's verdict (infected or unscannable, engine ``clamav``), or clean with the engines
        that ran (``charter+clamav``).

    Raises:
        ScannerUnavailable: the scanner could not be reached or stopped answering.
    """
    found = structural_scan(stream, limits=limits)
    if found.verdict is not Verdict.CLEAN or scanner is None:
        return found
    stream.seek(0)
    try:
        outcome = scanner.scan(stream)
    except OSError as error:
        raise ScannerUnavailable(f"{scanner.engine} could not be reached: {type(error).__name__}: {error}") from error
    verdict = Verdict(outcome.verdict)
    if verdict is Verdict.CLEAN:
        return ScanResult(Verdict.CLEAN, f"{BUILTIN_ENGINE}+{scanner.engine}")
    return ScanResult(verdict, scanner.engine, outcome.signature, outcome.detail)


def is_blocked(result: ScanResult, *, block_unscannable: bool = True) -> bool:
    """Whether a document with this verdict is quarantined (never extracted, indexed or served).

    Args:
        result: the scan's result.
        block_unscannable: the policy for unscannable documents (DOCUMENT_BLOCK_UNSCANNABLE,
            true by default: what cannot be checked is not trusted).

    Returns:
        True for infected, and for unscannable unless the policy lets those through.
    """
    if result.verdict is Verdict.INFECTED:
        return True
    return result.verdict is Verdict.UNSCANNABLE and block_unscannable
