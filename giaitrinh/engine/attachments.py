"""Attached files: what a file really is (by its first bytes, never by its name) and where it is kept.

Accepted: PDF, JPEG, PNG, DOCX and XLSX, at most ``MAX_BYTES`` each. DOCX and XLSX are ZIP
archives: they are told apart by the entries Office writes (``[Content_Types].xml`` plus
``word/document.xml`` or ``xl/workbook.xml``), read from the archive's directory without
decompressing anything. Files are stored under the instance folder (never under the web
root), named by their sha256, written to a temporary name and renamed, so a reader never
sees half a file and the same evidence uploaded twice is kept once.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
MAX_FILES = 5

TYPES = {
    "pdf": ("application/pdf", ".pdf"),
    "jpeg": ("image/jpeg", ".jpg"),
    "png": ("image/png", ".png"),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
}
ACCEPT = ",".join(ext for _, ext in TYPES.values()) + ",.jpeg"

_storage: Path | None = None


def storage_dir() -> Path:
    """``GIAITRINH_ATTACHMENTS_DIR``, else ``instance/attachments``."""
    if _storage is not None:
        return _storage
    from ..config import INSTANCE_DIR

    return Path(os.environ.get("GIAITRINH_ATTACHMENTS_DIR") or INSTANCE_DIR / "attachments")


def set_storage_dir(path: Path | None) -> None:
    global _storage
    _storage = Path(path) if path is not None else None


class Rejected(ValueError):
    """Why a file is refused; ``too_large`` makes it a 413 rather than a 422."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class Checked:
    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The accepted type the bytes are, or None."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, ValueError, OSError, EOFError):
            return None
        if "[Content_Types].xml" not in names:
            return None
        if any(name.lower().endswith("vbaproject.bin") for name in names):
            return None  # a macro-enabled document (docm, xlsm) dressed as docx or xlsx
        if "word/document.xml" in names:
            return "docx"
        if "xl/workbook.xml" in names:
            return "xlsx"
    return None


def clean_filename(name: str | None, kind: str) -> str:
    """A safe download name: no path, no control characters, the extension the content has."""
    name = unicodedata.normalize("NFC", os.path.basename((name or "").replace("\\", "/")))
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in '"<>|:*?')
    name = re.sub(r"\s+", " ", name).strip(" .")[:200]
    stem, ext = os.path.splitext(name)
    wanted = TYPES[kind][1]
    if ext.lower() not in (wanted, ".jpeg" if kind == "jpeg" else wanted):
        stem = name
        ext = wanted
    return (stem or "tep-dinh-kem") + ext.lower()


def check(filename: str | None, data: bytes, label: str = "file") -> Checked:
    if len(data) > MAX_BYTES:
        raise Rejected(f"Tệp {filename or label} lớn hơn 10 MB ({len(data)} byte) (file larger than 10 MB)",
                       too_large=True)
    if not data:
        raise Rejected(f"Tệp {filename or label} rỗng (empty file)")
    kind = sniff(data)
    if kind is None:
        raise Rejected(f"Tệp {filename or label} không phải PDF, JPEG, PNG, DOCX hoặc XLSX theo nội dung "
                       "(only PDF, JPEG, PNG, DOCX, XLSX are accepted, checked by content)")
    return Checked(clean_filename(filename, kind), TYPES[kind][0], len(data), hashlib.sha256(data).hexdigest(), data)


def path_for(sha256: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("not a sha256")
    return storage_dir() / sha256[:2] / sha256


def store(checked: Checked) -> Path:
    """Write the bytes under their digest (once); safe to repeat, safe if the transaction then fails."""
    target = path_for(checked.sha256)
    if target.exists() and target.stat().st_size == checked.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(checked.data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return target


def read(sha256: str) -> bytes:
    data = path_for(sha256).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise OSError(f"attachment {sha256} does not match its digest")
    return data
