"""Personal data is never published unredacted.

The requester's own name, phone, email and address are removed wherever they
appear, and so is anything shaped like a phone number, an email address or an
identity-card number, whoever it belongs to.
"""
from __future__ import annotations

import re
import unicodedata

MASK = "[đã ẩn]"

_PATTERNS = [
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),                      # email
    re.compile(r"(?<!\d)(\+?84|0)[\s.-]?\d{2,3}([\s.-]?\d{3}){2}(?!\d)"),  # Vietnamese phone numbers
    re.compile(r"(?<!\d)\d{12}(?!\d)|(?<!\d)\d{9}(?!\d)"),           # CCCD (12) / CMND (9)
]


def _variants(value: str | None) -> list[str]:
    value = (value or "").strip()
    if len(value) < 3:
        return []
    return [value]


def redact(text: str | None, *, name: str | None = None, phone: str | None = None,
           email: str | None = None, address: str | None = None) -> tuple[str, int]:
    """(redacted text, number of removals)."""
    if not text:
        return text or "", 0
    out = unicodedata.normalize("NFC", text)
    count = 0
    for value in _variants(name) + _variants(address) + _variants(email) + _variants(phone):
        pattern = re.compile(re.escape(unicodedata.normalize("NFC", value)), re.IGNORECASE)
        out, n = pattern.subn(MASK, out)
        count += n
    for pattern in _PATTERNS:
        out, n = pattern.subn(MASK, out)
        count += n
    return out, count


def fold(text: str | None) -> str:
    """Lower case without diacritics: 'Thu hồi ĐẤT' -> 'thu hoi dat'."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", stripped.lower()).strip()
