"""Personal data is never published unredacted.

The requester's own name, phone, email and address are removed wherever they
appear, and so is anything shaped like a phone number, an email address or an
identity-card number, whoever it belongs to.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import regex

MASK = "[đã ẩn]"

_PATTERNS = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")),
    ("phone", re.compile(r"(?<!\d)(\+?84|0)[\s.-]?\d{2,3}([\s.-]?\d{3}){2}(?!\d)")),  # Vietnamese numbers
    ("id_number", re.compile(r"(?<!\d)\d{12}(?!\d)|(?<!\d)\d{9}(?!\d)")),            # CCCD (12) / CMND (9)
]


RULE_TIMEOUT = 0.2  # seconds one administrator's regular expression may spend on one text


@dataclass(frozen=True)
class Rule:
    """An administrator's redaction rule: a literal text (any case) or a regular expression."""

    pattern: str
    is_regex: bool = False

    def compiled(self):
        source = self.pattern if self.is_regex else regex.escape(unicodedata.normalize("NFC", self.pattern))
        return regex.compile(source, regex.IGNORECASE | regex.V0)


def _variants(value: str | None) -> list[str]:
    value = (value or "").strip()
    if len(value) < 3:
        return []
    return [value]


def redact_report(text: str | None, *, name: str | None = None, phone: str | None = None,
                  email: str | None = None, address: str | None = None,
                  rules: list[Rule] = ()) -> tuple[str, list[dict]]:
    """(redacted text, what was removed: [{"kind", "text"}]) for the publisher's preview."""
    if not text:
        return text or "", []
    out = unicodedata.normalize("NFC", text)
    removed: list[dict] = []

    def sub(kind: str, pattern: re.Pattern) -> None:
        nonlocal out

        def mask(match: re.Match) -> str:
            removed.append({"kind": kind, "text": match.group(0)})
            return MASK

        out = pattern.sub(mask, out)

    for kind, value in (("requester_name", name), ("requester_address", address),
                        ("requester_email", email), ("requester_phone", phone)):
        for variant in _variants(value):
            sub(kind, re.compile(re.escape(unicodedata.normalize("NFC", variant)), re.IGNORECASE))
    for rule in rules:
        try:
            out = rule.compiled().sub(lambda m: (removed.append({"kind": "rule", "text": m.group(0)}), MASK)[1],
                                      out, timeout=RULE_TIMEOUT)
        except TimeoutError:
            # Fail closed: a rule that cannot finish hides the whole text rather than nothing.
            removed.append({"kind": "rule", "text": out})
            out = MASK
    for kind, pattern in _PATTERNS:
        sub(kind, pattern)
    return out, removed


def redact(text: str | None, *, name: str | None = None, phone: str | None = None,
           email: str | None = None, address: str | None = None, rules: list[Rule] = ()) -> tuple[str, int]:
    """(redacted text, number of removals)."""
    out, removed = redact_report(text, name=name, phone=phone, email=email, address=address, rules=rules)
    return out, len(removed)


def check_rule(pattern: str, is_regex: bool) -> str | None:
    """Why an administrator's rule is unusable, or None. Rules are data, never code: a regular
    expression must compile, match no empty text and stay fast on a long adversarial input."""
    if not pattern or len(pattern) > 200 or "\x00" in pattern:
        return "1 to 200 characters"
    if not is_regex:
        return None if len(pattern.strip()) >= 2 else "at least 2 characters"
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE | regex.V0)
    except regex.error as exc:
        return f"invalid regular expression: {exc}"
    if compiled.search(""):
        return "the expression matches empty text"
    probe = ("a" * 2000 + "!") * 3 + ("0" * 2000 + "x") + ("ă " * 1000)
    try:
        compiled.search(probe, timeout=0.05)
    except TimeoutError:
        return "the expression is too slow (catastrophic backtracking)"
    return None


def fold(text: str | None) -> str:
    """Lower case without diacritics: 'Thu hồi ĐẤT' -> 'thu hoi dat'."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", stripped.lower()).strip()
