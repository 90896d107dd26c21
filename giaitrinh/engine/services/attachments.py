"""Attachments of a case: evidence from the requester, signed scans from officials.

A file is checked (content type by its first bytes, at most 10 MB) before any transaction
starts, written to the store under its sha256, then recorded in the use case's transaction
with its audit event. A file on disk whose transaction failed is harmless: nothing names it.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import attachments as files
from .. import audit, clock, db, forms
from ..accounts import Actor
from ..errors import Forbidden, NotFound, ServiceError, ValidationFailed
from ..models import Attachment, Request
from . import _common
from ._common import iso

KINDS = ("evidence", "signed_scan")
MAX_FILES, MAX_BYTES, ACCEPT = files.MAX_FILES, files.MAX_BYTES, files.ACCEPT


class TooLarge(ServiceError):
    code = "too_large"
    status = 413


def check_all(uploads: Iterable[tuple[str | None, bytes]], field: str = "attachments") -> list[files.Checked]:
    """Every upload checked, or one error naming each refused file (413 if one is over 10 MB)."""
    uploads = [(name, data) for name, data in uploads if name or data]
    if len(uploads) > files.MAX_FILES:
        raise ValidationFailed("quá nhiều tệp đính kèm (too many files)",
                               {field: f"Tối đa {files.MAX_FILES} tệp (at most {files.MAX_FILES} files)."})
    checked, errors, too_large = [], {}, False
    for i, (name, data) in enumerate(uploads):
        try:
            checked.append(files.check(name, data))
        except files.Rejected as exc:
            errors[f"{field}.{i}"] = str(exc)
            too_large = too_large or exc.too_large
    if errors:
        error = TooLarge if too_large else ValidationFailed
        raise error("tệp đính kèm không được chấp nhận (file refused)", errors)
    return checked


def record(session: Session, request: Request, checked: list[files.Checked], kind: str, by: str,
           note: str | None = None) -> list[Attachment]:
    """Store the files and their rows in the caller's transaction, with one audit event each."""
    rows = []
    for item in checked:
        files.store(item)
        row = Attachment(request_id=request.id, kind=kind, filename=item.filename, content_type=item.content_type,
                         size=item.size, sha256=item.sha256, note=note, uploaded_at=clock.now(), uploaded_by=by)
        session.add(row)
        rows.append(row)
        audit.record(session, "attachment_added", actor=by, request_id=request.id, public=False,
                     after={"kind": kind, "filename": item.filename, "sha256": item.sha256, "size": item.size})
    return rows


def _summary(row: Attachment, code: str) -> dict:
    return {"id": row.id, "kind": row.kind, "filename": row.filename, "content_type": row.content_type,
            "size": row.size, "sha256": row.sha256, "note": row.note, "uploaded_at": iso(row.uploaded_at),
            "uploaded_by": row.uploaded_by if row.uploaded_by != "citizen" else "citizen",
            "url": f"/api/v1/requests/{code}/attachments/{row.id}"}


def _case(session: Session, code: str, token: str | None, actor: Actor | None) -> Request:
    from .requests import _authorize

    if not isinstance(code, str) or len(code) > 32:
        raise NotFound("không có yêu cầu này (unknown request)")
    return _authorize(session, code, token, actor)


def attach(code: str, uploads: list[tuple[str | None, bytes]], actor: Actor, note: Any = None) -> list[dict]:
    """An official of the case's unit adds signed scans (or other papers) to the case file."""
    if not actor.handles_cases:
        raise Forbidden("chỉ cán bộ xử lý hồ sơ của đơn vị (case officials only)")
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise ValidationFailed("ghi chú không hợp lệ", {"note": "Tối đa 500 ký tự (at most 500 characters)."})
    note = forms.normalize(note.strip()) if isinstance(note, str) and note.strip() else None
    if note and forms.control_characters(note):
        raise ValidationFailed("ghi chú không hợp lệ", forms.control_characters(note, "note"))
    checked = check_all(uploads, "file")
    if not checked:
        raise ValidationFailed("chưa chọn tệp (no file)", {"file": "Chọn ít nhất một tệp (choose a file)."})
    with db.transaction() as session:
        request = _case(session, code, None, actor)
        request = _common.request_for_update(session, request.code)
        rows = record(session, request, checked, "signed_scan", actor.username, note)
        session.flush()
        return [_summary(r, request.code) for r in rows]


def list_attachments(code: str, token: str | None = None, actor: Actor | None = None) -> dict:
    with db.read_only() as session:
        request = _case(session, code, token, actor)
        rows = session.execute(select(Attachment).where(Attachment.request_id == request.id)
                               .order_by(Attachment.uploaded_at, Attachment.id)).scalars()
        return {"items": [_summary(r, request.code) for r in rows]}


def download(code: str, attachment_id: Any, token: str | None = None, actor: Actor | None = None) -> dict:
    """{"content", "mime", "filename", "sha256"}; the bytes are checked against their digest."""
    if not isinstance(attachment_id, int) or not 0 < attachment_id < 2 ** 31:
        raise NotFound("không có tệp này (unknown attachment)")
    official = actor is not None and actor.handles_cases
    with (db.transaction() if official else db.read_only()) as session:
        request = _case(session, code, token, actor)
        row = session.get(Attachment, attachment_id)
        if row is None or row.request_id != request.id:
            raise NotFound("không có tệp này (unknown attachment)")
        try:
            content = files.read(row.sha256)
        except (OSError, ValueError):
            raise NotFound("tệp không còn trong kho lưu trữ (file missing from the store)") from None
        if official:
            _common.record_personal_data_view(session, request, actor, "attachment")
        return {"content": content, "mime": row.content_type, "filename": row.filename, "sha256": row.sha256}


def purge_case(session: Session, request_id: int) -> list[str]:
    """Retention: names and notes of the case's files are erased; returns their digests, whose
    bytes ``delete_unreferenced`` removes once the purge has committed."""
    digests = []
    for row in session.execute(select(Attachment).where(Attachment.request_id == request_id)).scalars():
        row.filename = "[đã xóa]"
        row.note = None
        digests.append(row.sha256)
    return digests


def delete_unreferenced(digests: list[str]) -> int:
    """Remove stored files that only purged cases still name (the same file may serve another case)."""
    removed = 0
    with db.read_only() as session:
        for digest in set(digests):
            alive = session.execute(select(Attachment.id).join(Request, Request.id == Attachment.request_id)
                                    .where(Attachment.sha256 == digest, Request.purged_at.is_(None)).limit(1)).first()
            if alive is None:
                try:
                    files.path_for(digest).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
