"""Administrative documents in the layout of Decree 30/2020/NĐ-CP: templates, fields, PDF and DOCX.

Nothing here touches the database. ``services/documents.py`` fixes a document's fields when
the lifecycle event happens (number and symbol, issuing body, place and date, subject,
body from the unit's template, recipients, signer) and stores the rendered bytes once.

Templates are plain text with ``{placeholder}`` fields, edited by administrators. They are
never evaluated: ``check_template`` accepts only the placeholders a kind declares (no
attribute access, no index, no format spec, no conversion), and ``fill`` substitutes
strings for names. ``{{`` and ``}}`` are literal braces.

Rendering is deterministic: the fonts ship with the package (DejaVu Serif, which has every
Vietnamese glyph), the PDF's dates and file id come from the issue time, and the DOCX
archive entries carry that same time, so the same fields give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import string
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from pathlib import Path

from . import calendar as cal

FONTS_DIR = Path(__file__).resolve().parent.parent / "fonts"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "processes" / "documents"

NATIONAL_TITLE = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO = "Độc lập - Tự do - Hạnh phúc"

SECTIONS = ("title", "subject", "body", "recipients", "signer_title")
SECTION_LIMITS = {"title": 200, "subject": 500, "body": 20000, "recipients": 2000, "signer_title": 300}

COMMON_FIELDS = {
    "code": "mã hồ sơ",
    "subject": "tiêu đề yêu cầu",
    "requester_name": "họ tên người yêu cầu",
    "requester_address": "địa chỉ người yêu cầu",
    "received_date": "ngày nhận yêu cầu (dd/mm/yyyy)",
    "issuer": "tên cơ quan ban hành",
    "issuer_upper": "tên cơ quan ban hành, viết hoa",
    "issuer_body_upper": "tên tập thể lãnh đạo ký thay mặt (TM.), viết hoa: ỦY BAN NHÂN DÂN",
    "place": "địa danh",
    "today": "ngày ban hành (dd/mm/yyyy)",
}


@dataclass(frozen=True)
class Kind:
    key: str
    label: str          # Vietnamese name shown in lists
    label_en: str
    type_code: str | None  # Decree 30 abbreviation (TB, BB); None for a công văn
    fields: dict[str, str]  # placeholders beyond the common ones


KINDS: dict[str, Kind] = {k.key: k for k in (
    Kind("acceptance_notice", "Thông báo thụ lý giải trình", "Notice of acceptance", "TB",
         {"explain_by": "hạn giải trình (dd/mm/yyyy)", "note": "ghi chú gửi người yêu cầu"}),
    Kind("refusal_notice", "Thông báo từ chối giải trình", "Notice of refusal", "TB",
         {"ground": "căn cứ từ chối", "note": "ghi chú gửi người yêu cầu"}),
    Kind("redirection_notice", "Thông báo hướng dẫn đến cơ quan có thẩm quyền", "Notice of redirection", "TB",
         {"redirect_to": "cơ quan có thẩm quyền", "note": "ghi chú gửi người yêu cầu"}),
    Kind("extension_notice", "Thông báo gia hạn giải trình", "Notice of extension", "TB",
         {"reason": "lý do gia hạn", "days": "số ngày gia hạn", "new_deadline": "hạn mới (dd/mm/yyyy)"}),
    Kind("suspension_notice", "Thông báo tạm đình chỉ giải trình", "Notice of suspension", "TB",
         {"ground": "lý do tạm đình chỉ", "note": "ghi chú"}),
    Kind("resumption_notice", "Thông báo tiếp tục giải trình", "Notice of resumption", "TB",
         {"new_deadline": "hạn giải trình mới (dd/mm/yyyy)", "note": "ghi chú"}),
    Kind("termination_notice", "Thông báo đình chỉ giải trình", "Notice of termination", "TB",
         {"reason": "lý do đình chỉ"}),
    Kind("minutes", "Biên bản làm việc trực tiếp", "Minutes of the working session", "BB",
         {"minutes": "nội dung biên bản", "held_date": "ngày làm việc (dd/mm/yyyy)",
          "official_name": "người đại diện cơ quan"}),
    Kind("explanation", "Văn bản giải trình", "Explanation document", None,
         {"request_content": "nội dung yêu cầu", "dialogue_results": "kết quả làm việc trực tiếp",
          "legal_basis": "căn cứ pháp lý", "explanation_content": "nội dung giải trình"}),
)}


class TemplateError(ValueError):
    """A template that cannot be used; ``fields`` maps each section to what is wrong with it."""

    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def allowed_fields(kind: str) -> dict[str, str]:
    return {**COMMON_FIELDS, **KINDS[kind].fields}


# -- templates ------------------------------------------------------------------------------

_SECTION_LINE = re.compile(r"^\[(\w+)\]\s*$")


def parse_template_text(text: str) -> dict[str, str]:
    """``[section]`` headers followed by their text (the shipped default files)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _SECTION_LINE.match(line)
        if match and match.group(1) in SECTIONS:
            current = match.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def default_template(kind: str) -> dict[str, str]:
    if kind not in KINDS:
        raise KeyError(kind)
    return dict(_default_template(kind))


@lru_cache(maxsize=None)
def _default_template(kind: str) -> dict[str, str]:
    return parse_template_text((TEMPLATES_DIR / f"{kind}.txt").read_text(encoding="utf-8"))


def _placeholders(text: str) -> list[tuple[str, str | None, str | None]]:
    """(field name, format spec, conversion) of every replacement field; ValueError if malformed."""
    return [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]


def check_template(kind: str, sections: dict) -> dict[str, str]:
    """Errors per section: unknown placeholders, malformed braces, missing or oversized sections."""
    if kind not in KINDS:
        return {"kind": f"Không có loại văn bản {kind} (unknown document kind)."}
    allowed = allowed_fields(kind)
    errors: dict[str, str] = {}
    for section in SECTIONS:
        text = sections.get(section)
        if not isinstance(text, str):
            errors[section] = "Bắt buộc (required)."
            continue
        if section in ("title", "body", "signer_title") and not text.strip():
            errors[section] = "Không được để trống (must not be empty)."
            continue
        if len(text) > SECTION_LIMITS[section]:
            errors[section] = f"Tối đa {SECTION_LIMITS[section]} ký tự (at most {SECTION_LIMITS[section]} characters)."
            continue
        if any(ord(c) < 32 and c not in "\n\t" for c in text):
            errors[section] = "Có ký tự điều khiển (control characters are not allowed)."
            continue
        try:
            found = _placeholders(text)
        except ValueError as exc:
            errors[section] = (f"Dấu ngoặc nhọn không hợp lệ: {exc}; dùng {{{{ và }}}} để viết dấu ngoặc "
                               f"(malformed braces: {exc})")
            continue
        for name, spec, conv in found:
            if name not in allowed:
                errors[section] = (f"Trường thay thế không hợp lệ: {{{name}}}. Được dùng: "
                                   + ", ".join("{" + n + "}" for n in allowed)
                                   + f" (unknown placeholder {{{name}}})")
                break
            if spec or conv:
                errors[section] = (f"Trường {{{name}}} không được có định dạng hoặc chuyển đổi "
                                   f"(no format spec or conversion in {{{name}}})")
                break
    return errors


@lru_cache(maxsize=256)
def _pieces(text: str) -> tuple[tuple[str, str | None], ...]:
    """A template's (literal, placeholder) pairs: the templates are few, their documents many."""
    return tuple((literal, name) for literal, name, _spec, _conv in string.Formatter().parse(text))


_RUNS_OF_BLANKS = re.compile(r"[ \t]{2,}")
_BLANKS_BEFORE_NEWLINE = re.compile(r"[ \t]+\n")


def fill(text: str, values: dict[str, str]) -> str:
    """Substitute checked placeholders by their string values; nothing is evaluated."""
    out = []
    for literal, name in _pieces(text):
        out.append(literal)
        if name is not None:
            out.append(str(values.get(name) or ""))
    # A placeholder left empty (an optional note) must not leave a blank gap. Each expression is
    # run only on a text that has what it looks for: scanning a letter's body costs more than
    # filling it.
    filled = "".join(out)
    if "\t" in filled or "  " in filled:
        filled = _RUNS_OF_BLANKS.sub(" ", filled)
    if " \n" in filled or "\t\n" in filled:
        filled = _BLANKS_BEFORE_NEWLINE.sub("\n", filled)
    return filled.strip()


# -- the Decree 30 parts ----------------------------------------------------------------------

_ADMIN_LEVELS = ("thành phố", "thị trấn", "phường", "xã", "quận", "huyện", "thị xã", "tỉnh", "đặc khu")


def issuer_name(unit_name: str) -> str:
    """The issuing body's full name: abbreviations written out (UBND -> Ủy ban nhân dân)."""
    name = unit_name.strip()
    for short, full in (("UBND", "Ủy ban nhân dân"), ("HĐND", "Hội đồng nhân dân")):
        if name.startswith(short + " "):
            name = full + name[len(short):]
    return name


def issuer_body(unit_name: str) -> str:
    """What "TM." signs for: "Ủy ban nhân dân" for a people's committee, else the body's name."""
    name = issuer_name(unit_name)
    for body in ("Ủy ban nhân dân", "Hội đồng nhân dân"):
        if name.startswith(body):
            return body
    return name


def issuer_abbreviation(unit_name: str) -> str:
    name = unit_name.strip()
    if name.startswith("UBND") or name.lower().startswith("ủy ban nhân dân"):
        return "UBND"
    initials = "".join(word[0] for word in name.split() if word[:1].isupper())
    return initials[:10] or "CQ"


def place_name(unit_name: str) -> str:
    """The place in "Mỹ Xuyên, ngày ...": the unit's administrative area without its level."""
    name = issuer_name(unit_name)
    for prefix in ("Ủy ban nhân dân", "Hội đồng nhân dân"):
        if name.startswith(prefix):
            name = name[len(prefix):].strip()
    lowered = name.lower()
    for level in _ADMIN_LEVELS:
        if lowered.startswith(level + " "):
            return name[len(level):].strip()
    return name


def place_and_date(place: str, when: datetime) -> str:
    """Decree 30: "Mỹ Xuyên, ngày 05 tháng 01 năm 2026" (days below 10, months below 3 padded)."""
    day = cal.local_date(when)
    month = f"{day.month:02d}" if day.month < 3 else str(day.month)
    return f"{place}, ngày {day.day:02d} tháng {month} năm {day.year}"


def short_date(value: datetime | str | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:  # a plain date
        return value.strftime("%d/%m/%Y")
    return cal.local_date(value).strftime("%d/%m/%Y")


def symbol(number: int, kind: str, issuer_abbr: str) -> str:
    """Number and symbol: "12/TB-UBND" for a notice; "12/UBND-GT" for the explanation (a công văn)."""
    type_code = KINDS[kind].type_code
    return f"{number}/{type_code}-{issuer_abbr}" if type_code else f"{number}/{issuer_abbr}-GT"


# json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":")), its encoder built once.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_digest(fields: dict) -> str:
    """sha256 of the fields as canonical JSON: the document's identity from the moment it is issued."""
    return hashlib.sha256(_CANONICAL.encode(fields).encode("utf-8")).hexdigest()


# -- rendering -------------------------------------------------------------------------------

PDF_MIME = "application/pdf"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _issued(fields: dict) -> datetime:
    return datetime.fromisoformat(fields["issued_at"])


def render_pdf(fields: dict) -> bytes:
    """A4, Decree 30 margins (top 20, bottom 20, left 30, right 15 mm), fonts embedded."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    issued = _issued(fields)
    pdf.set_creation_date(issued)
    pdf.set_title(f"{fields['title']} {fields['symbol']}")
    pdf.set_author(fields["issuer"])
    pdf.set_creator("GiảiTrình")
    pdf.set_producer("GiảiTrình")
    for style, file in (("", "DejaVuSerif.ttf"), ("B", "DejaVuSerif-Bold.ttf"), ("I", "DejaVuSerif-Italic.ttf"),
                        ("BI", "DejaVuSerif-BoldItalic.ttf")):
        pdf.add_font("Serif", style, str(FONTS_DIR / file))
    pdf.set_margins(30, 20, 15)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    width = pdf.w - 45  # 165 mm of text
    left_w, right_w = 68, width - 68
    top = pdf.get_y()

    # Left: issuing body, then number and symbol. Right: national title and motto, then place and date.
    pdf.set_font("Serif", "", 11)
    if fields.get("superior"):
        pdf.set_xy(30, top)
        pdf.multi_cell(left_w, 5, fields["superior"].upper(), align="C")
        pdf.set_x(30)
    else:
        pdf.set_xy(30, top)
    pdf.set_font("Serif", "B", 11)
    pdf.multi_cell(left_w, 5, fields["issuer"].upper(), align="C")
    y_left = pdf.get_y()
    pdf.line(30 + left_w / 2 - 12, y_left + 0.5, 30 + left_w / 2 + 12, y_left + 0.5)
    pdf.set_xy(30, y_left + 2)
    pdf.set_font("Serif", "", 11)
    pdf.multi_cell(left_w, 5, f"Số: {fields['symbol']}", align="C")
    if fields.get("subject_line_left"):
        pdf.set_x(30)
        pdf.set_font("Serif", "", 10)
        pdf.multi_cell(left_w, 4.5, fields["subject_line_left"], align="C")
    y_left = pdf.get_y()

    pdf.set_xy(30 + left_w, top)
    pdf.set_font("Serif", "B", 10.5)
    pdf.multi_cell(right_w, 5, NATIONAL_TITLE, align="C")
    pdf.set_x(30 + left_w)
    pdf.set_font("Serif", "B", 11)
    pdf.multi_cell(right_w, 5, MOTTO, align="C")
    y_right = pdf.get_y()
    center = 30 + left_w + right_w / 2
    pdf.line(center - 26, y_right + 0.5, center + 26, y_right + 0.5)
    pdf.set_xy(30 + left_w, y_right + 2)
    pdf.set_font("Serif", "I", 11)
    pdf.multi_cell(right_w, 5, fields["place_date"], align="C")
    y_right = pdf.get_y()

    pdf.set_xy(30, max(y_left, y_right) + 8)
    if fields.get("title"):
        pdf.set_font("Serif", "B", 13)
        pdf.multi_cell(width, 6, fields["title"], align="C")
    if fields.get("subject_line") and not fields.get("subject_line_left"):
        pdf.set_x(30)
        pdf.set_font("Serif", "B", 12)
        pdf.multi_cell(width, 6, fields["subject_line"], align="C")
    pdf.ln(5)
    pdf.set_font("Serif", "", 12)
    for paragraph in fields["body"].split("\n"):
        pdf.set_x(30)
        if paragraph.strip():
            pdf.multi_cell(width, 6.2, "      " + paragraph.strip(), align="J")
            pdf.ln(1.5)
        else:
            pdf.ln(2)

    # Signer bottom right; bottom left the recipients, or (minutes) the other side's signature,
    # with the recipients under both.
    pdf.ln(4)
    if pdf.get_y() > pdf.h - 70:
        pdf.add_page()
    y = pdf.get_y()
    two_sides = bool(fields.get("second_signer_title"))

    def signature(x: float, w: float, title: str, name: str, hint: str) -> float:
        pdf.set_xy(x, y)
        pdf.set_font("Serif", "B", 12)
        pdf.multi_cell(w, 5.5, title, align="C")
        pdf.set_x(x)
        pdf.set_font("Serif", "I", 10)
        pdf.multi_cell(w, 5, hint, align="C")
        pdf.ln(22)
        pdf.set_x(x)
        pdf.set_font("Serif", "B", 12)
        pdf.multi_cell(w, 5.5, name or "", align="C")
        return pdf.get_y()

    def recipients(top: float) -> float:
        pdf.set_xy(30, top)
        pdf.set_font("Serif", "BI", 11)
        pdf.multi_cell(70, 5, "Nơi nhận:")
        pdf.set_font("Serif", "", 10)
        for line in fields.get("recipients", "").split("\n"):
            if line.strip():
                pdf.set_x(30)
                pdf.multi_cell(70, 4.8, line.strip())
        return pdf.get_y()

    hint = "(Ký, ghi rõ họ tên, đóng dấu)" if fields.get("stamp", True) else "(Ký, ghi rõ họ tên)"
    y_left = signature(30, 70, fields["second_signer_title"], fields.get("second_signer_name"),
                       "(Ký, ghi rõ họ tên)") if two_sides else recipients(y)
    y_right = signature(100, width - 70, fields["signer_title"], fields.get("signer_name"), hint)
    if two_sides and fields.get("recipients"):
        recipients(max(y_left, y_right) + 8)
    # fpdf2's file identifier is a digest of the content: the same fields give the same bytes.
    return bytes(pdf.output())


def render_docx(fields: dict) -> bytes:
    """The same document as an editable DOCX (Times New Roman 13, the Decree's font)."""
    from docx import Document
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Mm, Pt

    doc = Document()
    section = doc.sections[0]
    section.page_height, section.page_width = Mm(297), Mm(210)
    section.top_margin, section.bottom_margin = Mm(20), Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(13)
    issued = _issued(fields)
    props = doc.core_properties
    props.title = f"{fields['title']} {fields['symbol']}"
    props.author = fields["issuer"]
    props.last_modified_by = fields["issuer"]
    props.created = issued.replace(tzinfo=None)
    props.modified = issued.replace(tzinfo=None)
    props.revision = 1

    def para(container, text, bold=False, italic=False, align=WD_ALIGN_PARAGRAPH.CENTER, size=None):
        p = container.add_paragraph()
        p.alignment = align
        p.paragraph_format.space_after = Pt(0)
        run = p.add_run(text)
        run.bold, run.italic = bold, italic
        if size:
            run.font.size = Pt(size)
        return p

    header = doc.add_table(rows=1, cols=2)
    header.alignment = WD_TABLE_ALIGNMENT.CENTER
    left, right = header.rows[0].cells
    left.width, right.width = Mm(68), Mm(97)
    left.paragraphs[0].text = ""
    if fields.get("superior"):
        para(left, fields["superior"].upper(), size=12)
    para(left, fields["issuer"].upper(), bold=True, size=12)
    para(left, f"Số: {fields['symbol']}", size=12)
    if fields.get("subject_line_left"):
        para(left, fields["subject_line_left"], size=11)
    right.paragraphs[0].text = ""
    para(right, NATIONAL_TITLE, bold=True, size=12)
    para(right, MOTTO, bold=True, size=13)
    para(right, fields["place_date"], italic=True, size=13)
    doc.add_paragraph()
    if fields.get("title"):
        para(doc, fields["title"], bold=True, size=14)
    if fields.get("subject_line") and not fields.get("subject_line_left"):
        para(doc, fields["subject_line"], bold=True)
    doc.add_paragraph()
    for paragraph in fields["body"].split("\n"):
        if paragraph.strip():
            p = para(doc, paragraph.strip(), align=WD_ALIGN_PARAGRAPH.JUSTIFY)
            p.paragraph_format.first_line_indent = Mm(10)
            p.paragraph_format.space_after = Pt(6)
    footer = doc.add_table(rows=1, cols=2)
    left, right = footer.rows[0].cells
    left.width, right.width = Mm(75), Mm(90)

    def signature(cell, title, name, hint):
        cell.paragraphs[0].text = ""
        for line in title.split("\n"):
            para(cell, line, bold=True)
        para(cell, hint, italic=True, size=11)
        for _ in range(3):
            para(cell, "")
        para(cell, name or "", bold=True)

    def recipients(container):
        para(container, "Nơi nhận:", bold=True, italic=True, align=WD_ALIGN_PARAGRAPH.LEFT, size=12)
        for line in fields.get("recipients", "").split("\n"):
            if line.strip():
                para(container, line.strip(), align=WD_ALIGN_PARAGRAPH.LEFT, size=11)

    hint = "(Ký, ghi rõ họ tên, đóng dấu)" if fields.get("stamp", True) else "(Ký, ghi rõ họ tên)"
    if fields.get("second_signer_title"):
        signature(left, fields["second_signer_title"], fields.get("second_signer_name"), "(Ký, ghi rõ họ tên)")
    else:
        left.paragraphs[0].text = ""
        recipients(left)
    signature(right, fields["signer_title"], fields.get("signer_name"), hint)
    if fields.get("second_signer_title") and fields.get("recipients"):
        doc.add_paragraph()
        recipients(doc)
    raw = io.BytesIO()
    doc.save(raw)
    return _fixed_zip_times(raw.getvalue(), issued)


def _fixed_zip_times(data: bytes, when: datetime) -> bytes:
    """Rewrite the archive with every entry dated ``when``: python-docx stamps the wall clock."""
    local = when.astimezone(cal.LOCAL_TZ)
    stamp = (max(local.year, 1980), local.month, local.day, local.hour, local.minute, local.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            info = zipfile.ZipInfo(item.filename, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            target.writestr(info, source.read(item.filename))
    return out.getvalue()
