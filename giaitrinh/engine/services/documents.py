"""Documents of a case (Decree 30/2020 layout): issued with the event that causes them, rendered once.

``issue`` runs inside the use case of the lifecycle event (a task completion, a suspension,
a withdrawal): it takes the next number of the unit's register for the year, fixes every
field of the document (issuing body, number and symbol, place and date, subject, body from
the template in force, recipients, signer), stores them with their digest and writes the
audit event, in that use case's transaction. Rendering a PDF with embedded fonts costs far
more than the rest of a completion, so it is not done there: the first time anyone asks for
the document (or ``render_pending`` runs), PDF and DOCX are rendered from the stored fields,
stored once with their sha256 (a second renderer finds them written and keeps the first),
and the digests go into the audit trail. What is downloaded is always those stored bytes.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
import weakref
from concurrent.futures import ThreadPoolExecutor
from time import monotonic as _monotonic
from typing import Any

from sqlalchemy import bindparam, delete, event, select, update
from sqlalchemy.orm import Session, undefer

from .. import audit, calendar as cal, clock, db, documents as docs, entityreads, mail, notifications
from ..accounts import Actor
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import Document, DocumentFile, DocumentTemplate, Membership, Request, User
from . import _common
from ._common import iso

log = logging.getLogger(__name__)

FORMATS = {"pdf": docs.PDF_MIME, "docx": docs.DOCX_MIME}
SECTIONS, SECTION_LIMITS = docs.SECTIONS, docs.SECTION_LIMITS

# The lifecycle's audit actions and the document each one issues.
ACTION_KINDS = {
    "accepted": "acceptance_notice",
    "refused": "refusal_notice",
    "redirected": "redirection_notice",
    "extended": "extension_notice",
    "dialogue": "minutes",
    "explained": "explanation",
    "suspended": "suspension_notice",
    "resumed": "resumption_notice",
    "withdrawn": "termination_notice",
    "terminated": "termination_notice",
}


# -- issuing ------------------------------------------------------------------------------------


_SIGNER_SECONDS = 60.0
_signers: "weakref.WeakKeyDictionary[Any, dict[str, tuple[float, str]]]" = weakref.WeakKeyDictionary()
_signers_lock = threading.Lock()

_HEAD_OF_UNIT = (select(User.full_name).join(Membership, Membership.user_id == User.id)
                 .where(Membership.role == "head", Membership.unit_code == bindparam("unit"),
                        User.is_active.is_(True)).order_by(User.id).limit(1))


def _person(full_name: str) -> str:
    """"Lê Văn Lãnh Đạo (Chủ tịch UBND phường)" -> "Lê Văn Lãnh Đạo"."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", full_name or "").strip()


def _head_of_unit(session: Session, unit_code: str) -> str:
    """The name that signs for the unit (its head), cached a minute per process like unit names."""
    cached = _signers.get(db.get_engine(), {}).get(unit_code)
    if cached is not None and _monotonic() - cached[0] < _SIGNER_SECONDS:
        return cached[1]
    name = _person(session.execute(_HEAD_OF_UNIT, {"unit": unit_code}).scalar_one_or_none() or "")
    with _signers_lock:
        _signers.setdefault(db.get_engine(), {})[unit_code] = (_monotonic(), name)
    return name


# Per database engine, kind -> (when read, sections, version). Like unit names and the calendar:
# a save in this process clears it; other processes use an edited template within a minute.
_TEMPLATE_SECONDS = 60.0
_templates: "weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict, int]]]" = weakref.WeakKeyDictionary()


def template_in_force(session: Session, kind: str, fresh: bool = False) -> tuple[dict[str, str], int]:
    """(sections, version): the administrators' version of the template, else the shipped default (0)."""
    cached = None if fresh else _templates.get(db.get_engine(), {}).get(kind)
    if cached is not None and _monotonic() - cached[0] < _TEMPLATE_SECONDS:
        return dict(cached[1]), cached[2]
    row = session.get(DocumentTemplate, kind)
    sections, version = (dict(row.sections), row.version) if row is not None else (docs.default_template(kind), 0)
    with _signers_lock:
        _templates.setdefault(db.get_engine(), {})[kind] = (_monotonic(), dict(sections), version)
    return sections, version


def _forget_templates() -> None:
    with _signers_lock:
        _templates.pop(db.get_engine(), None)


def _base_values(session: Session, request: Request, now) -> dict[str, str]:
    unit = _common.unit_name(session, request.unit_code)
    issuer = docs.issuer_name(unit)
    return {
        "code": request.code,
        "subject": request.subject,
        "requester_name": request.requester_name,
        "requester_address": request.requester_address,
        "received_date": docs.short_date(request.received_at),
        "issuer": issuer,
        "issuer_upper": issuer.upper(),
        "issuer_body_upper": docs.issuer_body(unit).upper(),
        "place": docs.place_name(unit),
        "today": docs.short_date(now),
    }


# Values the templates print inside a sentence that the template itself ends.
_CLAUSES = ("reason", "ground", "redirect_to")


def _clause(key: str, value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return text.rstrip(" .;") if key in _CLAUSES else text


def issue(session: Session, request: Request, kind: str, values: dict[str, Any], actor: str,
          signer_name: str | None = None, step: str | None = None) -> Document:
    """Fix a new document's fields and number in the caller's transaction, with its audit event."""
    now = clock.now()
    type_code = docs.KINDS[kind].type_code or "CV"
    year = cal.local_date(now).year
    # These reads touch nothing the use case has changed: no need to flush its work first.
    with session.no_autoflush:
        unit = _common.unit_name(session, request.unit_code)
        abbreviation = docs.issuer_abbreviation(unit)
        sections, template_version = template_in_force(session, kind)
        filled = {**_base_values(session, request, now),
                  **{k: _clause(k, v) for k, v in values.items()}}
        number = _common.next_in_register(session, f"doc:{request.unit_code}:{year}:{type_code}")
        if signer_name is None:
            signer_name = _head_of_unit(session, request.unit_code)
    symbol = docs.symbol(number, kind, abbreviation)
    subject_line = docs.fill(sections.get("subject", ""), filled)
    fields = {
        "kind": kind,
        "issued_at": iso(now),
        "symbol": symbol,
        "issuer": filled["issuer"],
        "place_date": docs.place_and_date(filled["place"], now),
        "title": docs.fill(sections["title"], filled),
        "subject_line": subject_line,
        # A công văn (the explanation) carries its "V/v ..." under the number, not under a title.
        "subject_line_left": subject_line if docs.KINDS[kind].type_code is None else "",
        "body": docs.fill(sections["body"], filled),
        "recipients": docs.fill(sections.get("recipients", ""), filled),
        "signer_title": docs.fill(sections["signer_title"], filled),
        "signer_name": signer_name,
        "stamp": kind != "minutes",
        "template_version": template_version,
        "request_code": request.code,
    }
    if kind == "minutes":
        fields["second_signer_title"] = "NGƯỜI YÊU CẦU GIẢI TRÌNH"
        fields["second_signer_name"] = request.requester_name
    digest = docs.content_digest(fields)
    document = entityreads.new(Document, request_id=request.id, kind=kind, unit_code=request.unit_code, year=year,
                               type_code=type_code, number=number, symbol=symbol, issued_at=now, issued_by=actor,
                               fields=fields, content_sha256=digest)
    entityreads.add(session, document)
    _attach_to_notice(session, request, kind, symbol)
    if _renderer is not None:
        session.info.setdefault(_ISSUED, []).append(document)
    audit.record(session, "document_issued", actor=actor, request_id=request.id, step=step, public=False,
                 note=f"{docs.KINDS[kind].label} số {symbol}",
                 after={"kind": kind, "symbol": symbol, "content_sha256": digest,
                        "template_version": template_version})
    return document


# The citizen's email notice that carries each document as a PDF (engine.notifications kinds).
_NOTICE_ACTION = {kind: action for action, kind in ACTION_KINDS.items()}


def _attach_to_notice(session: Session, request: Request, kind: str, symbol: str) -> None:
    """The notice email of the same event carries the formal document (its PDF, rendered when
    the mail is sent). Referenced by symbol, which is unique per unit and year, so issuing needs
    no flush for an id."""
    notice = notifications.CITIZEN_NOTICES.get(_NOTICE_ACTION.get(kind, ""))
    if notice is not None and request.requester_email:
        notifications.attach(session, request.id, notice, {"request_id": request.id, "document_symbol": symbol})


def attachment_for_mail(session: Session, reference: dict) -> tuple[str, str, bytes] | None:
    """engine.mail's resolver for the references above: (file name, MIME type, PDF bytes)."""
    if "document_symbol" not in reference:
        return None
    document = session.execute(select(Document).where(Document.request_id == reference.get("request_id"),
                                                      Document.symbol == reference["document_symbol"])
                               ).scalar_one_or_none()
    if document is None:
        return None  # the mail retries and, in the end, is a failed message an administrator sees
    safe_symbol = re.sub(r"[^0-9A-Za-z-]+", "-", document.symbol).strip("-")
    name, document_id, rendered = f"{document.kind}-{safe_symbol}.pdf", document.id, document.pdf_sha256 is not None
    if not rendered:
        _render_and_store(document_id)
        # The caller's read began before the files were stored: read them afresh.
        with db.read_only() as fresh:
            content = _stored_pdf(fresh, document_id)
    else:
        content = _stored_pdf(session, document_id)
    if content is None:  # erased by retention: send nothing rather than a stale copy
        return None
    return name, FORMATS["pdf"], content


def _stored_pdf(session: Session, document_id: int) -> bytes | None:
    stored = session.execute(select(DocumentFile).options(undefer(DocumentFile.content))
                             .where(DocumentFile.document_id == document_id, DocumentFile.format == "pdf")
                             ).scalar_one_or_none()
    return None if stored is None else bytes(stored.content)


mail.register_attachment_resolver(attachment_for_mail)


def issue_for_events(session: Session, request: Request, actions: list[str], data: dict, actor: Actor,
                     step: str | None = None) -> list[Document]:
    """The documents that a completed task's audit actions call for (tasks.complete)."""
    issued = []
    for action in actions:
        kind = ACTION_KINDS.get(action)
        if kind is None or kind in ("suspension_notice", "resumption_notice", "termination_notice"):
            continue
        values, signer = _values_for(kind, request, data, actor)
        issued.append(issue(session, request, kind, values, actor.username, signer, step))
    return issued


def _values_for(kind: str, request: Request, data: dict, actor: Actor) -> tuple[dict[str, Any], str | None]:
    from .tasks import REFUSAL_GROUNDS

    deadlines = request.deadlines or {}
    signer = _person(actor.full_name) if actor.has_role("head", request.unit_code) and actor.full_name else None
    if kind == "acceptance_notice":
        return {"explain_by": docs.short_date(deadlines.get("explain_by")), "note": data.get("note")}, signer
    if kind == "refusal_notice":
        return {"ground": REFUSAL_GROUNDS.get(data.get("ground"), data.get("ground")), "note": data.get("note")}, signer
    if kind == "redirection_notice":
        return {"redirect_to": data.get("redirect_to"), "note": data.get("note")}, signer
    if kind == "extension_notice":
        extend = data.get("extend") or {}
        return {"reason": extend.get("reason"), "days": extend.get("days"),
                "new_deadline": docs.short_date(deadlines.get("explain_by"))}, signer
    if kind == "minutes":
        official = _person(actor.full_name) or actor.username
        held = data.get("held_at")
        return {"minutes": data.get("minutes"), "held_date": docs.short_date(held) if held else
                docs.short_date(clock.now()), "official_name": official}, official
    if kind == "explanation":
        explanation = request.explanation or {}
        minutes = [m.get("minutes") for m in explanation.get("minutes") or [] if m.get("minutes")]
        return {"request_content": request.content,
                "dialogue_results": " ".join(minutes) if minutes else "Không tổ chức làm việc trực tiếp.",
                "legal_basis": explanation.get("legal_basis"),
                "explanation_content": explanation.get("content")}, signer
    raise KeyError(kind)


def issue_notice(session: Session, request: Request, kind: str, actor: Actor | str, **values) -> Document:
    """Suspension, resumption and termination notices (supervision and withdrawal use cases).

    A ``new_deadline`` is given as the deadline's ISO text and printed as its date."""
    if values.get("new_deadline"):
        values["new_deadline"] = docs.short_date(values["new_deadline"])
    name = actor if isinstance(actor, str) else actor.username
    signer = None
    if not isinstance(actor, str) and actor.has_role("head", request.unit_code) and actor.full_name:
        signer = _person(actor.full_name)
    return issue(session, request, kind, values, name, signer)


# -- reading and rendering -----------------------------------------------------------------------


def _summary(document: Document, code: str) -> dict:
    item = {"id": document.id, "kind": document.kind, "title": docs.KINDS[document.kind].label,
            "title_en": docs.KINDS[document.kind].label_en, "symbol": document.symbol,
            "issued_at": iso(document.issued_at), "sha256": document.pdf_sha256,
            "pdf_sha256": document.pdf_sha256, "docx_sha256": document.docx_sha256,
            "content_sha256": document.content_sha256,
            "pdf_url": f"/api/v1/requests/{code}/documents/{document.id}/pdf",
            "docx_url": f"/api/v1/requests/{code}/documents/{document.id}/docx"}
    return item


def _render_and_store(document_id: int) -> None:
    """Render one document's PDF and DOCX and store them, unless someone already has (write once)."""
    with db.read_only() as session:
        row = session.execute(select(Document).options(undefer(Document.fields))
                              .where(Document.id == document_id)).scalar_one()
        if row.pdf_sha256 is not None or (row.fields or {}).get("purged"):
            return
        fields = dict(row.fields)
        request_id = row.request_id
    rendered = {"pdf": docs.render_pdf(fields), "docx": docs.render_docx(fields)}
    digests = {fmt: hashlib.sha256(data).hexdigest() for fmt, data in rendered.items()}
    with db.transaction() as session:
        claimed = session.execute(
            update(Document).where(Document.id == document_id, Document.pdf_sha256.is_(None))
            .values(pdf_sha256=digests["pdf"], docx_sha256=digests["docx"], rendered_at=clock.now())
        ).rowcount
        if not claimed:  # rendered meanwhile by another process: its bytes stand
            return
        for fmt, data in rendered.items():
            session.add(DocumentFile(document_id=document_id, format=fmt, sha256=digests[fmt], size=len(data),
                                     content=data))
        audit.record(session, "document_rendered", actor="system", request_id=request_id, public=False,
                     after={"document": document_id, "pdf_sha256": digests["pdf"], "docx_sha256": digests["docx"]})


# -- rendering in the background (the server turns it on; tests and the benchmark do not) ---------

_ISSUED = "giaitrinh_issued_documents"
_renderer: ThreadPoolExecutor | None = None


def start_background_rendering() -> None:
    """Render each document on a worker thread of this process once its transaction commits,
    so nobody waits for it later; what a crash leaves unrendered is rendered on first read."""
    global _renderer
    if _renderer is None:
        _renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="giaitrinh-documents")


def stop_background_rendering() -> None:
    global _renderer
    renderer, _renderer = _renderer, None
    if renderer is not None:
        renderer.shutdown(wait=True)


def _render_quietly(document_id: int) -> None:
    try:
        _render_and_store(document_id)
    except Exception:  # noqa: BLE001 - the next read renders it
        log.exception("rendering document %s failed; it will be rendered when first read", document_id)


@event.listens_for(Session, "after_commit")
def _render_committed(session: Session) -> None:
    issued = session.info.pop(_ISSUED, None)
    renderer = _renderer
    if not issued or renderer is None:
        return
    for document in issued:
        document_id = document.__dict__.get("id")  # no SQL after commit
        if document_id is not None:
            renderer.submit(_render_quietly, document_id)


@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _forget_issued(session: Session, *_args) -> None:
    session.info.pop(_ISSUED, None)


def render_pending(limit: int = 1000) -> int:
    """Render every document not yet rendered (the demo, ``giaitrinh documents render``)."""
    with db.read_only() as session:
        ids = list(session.execute(select(Document.id).where(Document.pdf_sha256.is_(None))
                                   .order_by(Document.id).limit(limit)).scalars())
    for document_id in ids:
        _render_and_store(document_id)
    return len(ids)


def _case(session: Session, code: str, token: str | None, actor: Actor | None) -> Request:
    from .requests import _authorize

    if not isinstance(code, str) or len(code) > 32:
        raise NotFound("không có yêu cầu này (unknown request)")
    return _authorize(session, code, token, actor)


def list_documents(code: str, token: str | None = None, actor: Actor | None = None) -> dict:
    """The case's documents, oldest first; any not yet rendered is rendered now (once)."""
    with db.read_only() as session:
        request = _case(session, code, token, actor)
        request_id, code = request.id, request.code
        pending = list(session.execute(select(Document.id).where(Document.request_id == request_id,
                                                                 Document.pdf_sha256.is_(None))).scalars())
    for document_id in pending:
        _render_and_store(document_id)
    with db.read_only() as session:
        rows = session.execute(select(Document).where(Document.request_id == request_id)
                               .order_by(Document.issued_at, Document.id)).scalars().all()
        return {"items": [_summary(d, code) for d in rows]}


def download(code: str, document_id: Any, fmt: str, token: str | None = None, actor: Actor | None = None) -> dict:
    """{"content", "mime", "filename", "sha256"} of one rendered document of the case."""
    if fmt not in FORMATS:
        raise NotFound("định dạng không có (unknown format: pdf or docx)")
    if not isinstance(document_id, int) or not 0 < document_id < 2 ** 31:
        raise NotFound("không có văn bản này (unknown document)")
    with db.read_only() as session:
        request = _case(session, code, token, actor)
        document = session.get(Document, document_id)
        if document is None or document.request_id != request.id:
            raise NotFound("không có văn bản này (unknown document)")
        rendered = document.pdf_sha256 is not None
    if not rendered:
        _render_and_store(document_id)
    official = actor is not None and actor.handles_cases
    with (db.transaction() if official else db.read_only()) as session:
        request = _case(session, code, token, actor)
        document = session.get(Document, document_id)
        stored = session.execute(select(DocumentFile).options(undefer(DocumentFile.content))
                                 .where(DocumentFile.document_id == document_id, DocumentFile.format == fmt)
                                 ).scalar_one_or_none()
        if stored is None:  # erased with the case's personal data (retention); its digests remain
            raise NotFound("văn bản đã được xóa theo thời hạn lưu trữ (erased by retention)")
        if official:  # the documents carry the requester's name and address
            _common.record_personal_data_view(session, request, actor, f"document:{document.kind}")
        safe_symbol = re.sub(r"[^0-9A-Za-z-]+", "-", document.symbol).strip("-")
        return {"content": bytes(stored.content), "mime": FORMATS[fmt], "sha256": stored.sha256,
                "filename": f"{request.code}-{document.kind}-{safe_symbol}.{fmt}"}


def purge_case(session: Session, request_id: int) -> int:
    """Retention: the documents' text and files go (they name the requester); number, symbol,
    dates and digests stay, in the rows and in the audit chain."""
    rows = session.execute(select(Document).options(undefer(Document.fields))
                           .where(Document.request_id == request_id)).scalars().all()
    for row in rows:
        row.fields = {"kind": row.kind, "symbol": row.symbol, "issued_at": iso(row.issued_at), "purged": True}
    if rows:
        session.execute(delete(DocumentFile).where(DocumentFile.document_id.in_([r.id for r in rows])))
    return len(rows)


# -- templates (administrators) ------------------------------------------------------------------


def _require_admin(actor: Actor) -> None:
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị viên hệ thống (administrators only)")


def list_templates(actor: Actor) -> list[dict]:
    _require_admin(actor)
    with db.read_only() as session:
        rows = {r.kind: r for r in session.execute(select(DocumentTemplate)).scalars()}
        return [{"kind": kind, "label": meta.label, "label_en": meta.label_en,
                 "version": rows[kind].version if kind in rows else 0,
                 "updated_by": rows[kind].updated_by if kind in rows else None,
                 "updated_at": iso(rows[kind].updated_at) if kind in rows else None}
                for kind, meta in docs.KINDS.items()]


def get_template(actor: Actor, kind: str) -> dict:
    _require_admin(actor)
    if kind not in docs.KINDS:
        raise NotFound("không có loại văn bản này (unknown document kind)")
    with db.read_only() as session:
        sections, version = template_in_force(session, kind, fresh=True)
    return {"kind": kind, "label": docs.KINDS[kind].label, "sections": sections, "version": version,
            "placeholders": docs.allowed_fields(kind)}


def save_template(actor: Actor, kind: str, sections: Any) -> dict:
    """A new version of a kind's template, for documents issued from now on; placeholders checked."""
    _require_admin(actor)
    if kind not in docs.KINDS:
        raise NotFound("không có loại văn bản này (unknown document kind)")
    if not isinstance(sections, dict):
        raise ValidationFailed("mẫu văn bản không hợp lệ", {"sections": "Phải là một đối tượng (object)."})
    clean = {name: unicodedata.normalize("NFC", (sections.get(name) or "").replace("\r\n", "\n").strip())
             if isinstance(sections.get(name, ""), str) else sections.get(name) for name in docs.SECTIONS}
    errors = docs.check_template(kind, clean)
    if errors:
        raise ValidationFailed("mẫu văn bản chưa hợp lệ (invalid template)", errors)
    with db.transaction() as session:
        row = session.get(DocumentTemplate, kind, with_for_update=True)
        before = dict(row.sections) if row is not None else docs.default_template(kind)
        if row is None:
            row = DocumentTemplate(kind=kind, sections=clean, version=1, updated_by=actor.username,
                                   updated_at=clock.now())
            session.add(row)
        else:
            row.sections = clean
            row.version += 1
            row.updated_by = actor.username
            row.updated_at = clock.now()
        session.flush()
        audit.record(session, "document_template_changed", actor=actor.username, public=False,
                     before={"kind": kind, "sections": before}, after={"kind": kind, "version": row.version,
                                                                       "sections": clean})
        result = {"kind": kind, "version": row.version}
    _forget_templates()
    return result
