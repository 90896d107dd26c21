"""A case's documents and attachments: downloads for the requester (tracking token) and for officials
(unit-scoped), officials' signed scans, and the administrators' document templates.

Every file is served as an attachment (``Content-Disposition: attachment``, ``nosniff``, not
cached), never rendered by the browser in the site's origin. The API routes live on the API
blueprint (bearer tokens, JSON errors); the pages' routes on this one.
"""
from __future__ import annotations

import io

from flask import Blueprint, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError
from ..engine.services import attachments as attachments_service
from ..engine.services import documents as documents_service
from . import api
from .auth import current_actor, login_required, require_actor
from .limits import limiter, track_limit
from .policy import policy
from .uploads import accepts_files, files_of

bp = Blueprint("documents", __name__)


def _file(result: dict):
    response = send_file(io.BytesIO(result["content"]), mimetype=result["mime"], as_attachment=True,
                         download_name=result["filename"], etag=result["sha256"], max_age=0, conditional=False)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Content-SHA256"] = result["sha256"]
    return response


def _who():
    """(token, actor): a tracking token in the link wins; else the signed-in official."""
    token = (request.args.get("token") or "").strip()[:64] or None
    return token, (None if token else current_actor())


# -- pages: downloads by tracking link or official session ---------------------------------------


@bp.get("/yeu-cau/<code>/van-ban/<int:document_id>.<fmt>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def document_file(code: str, document_id: int, fmt: str):
    token, actor = _who()
    return _file(documents_service.download(code[:32], document_id, fmt, token, actor))


@bp.get("/yeu-cau/<code>/tep/<int:attachment_id>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def attachment_file(code: str, attachment_id: int):
    token, actor = _who()
    return _file(attachments_service.download(code[:32], attachment_id, token, actor))


@bp.post("/giam-sat/ho-so/<code>/dinh-kem")
@policy("official")
@login_required
@accepts_files(attachments_service.MAX_FILES)
def attach(code: str):
    note = (request.form.get("note") or "").strip()[:500] or None
    try:
        added = attachments_service.attach(code[:32], files_of("file"), require_actor(), note)
    except ServiceError as exc:
        if exc.status in (401, 403, 404):
            raise
        detail = "; ".join(exc.fields.values()) if exc.fields else exc.message
        flash(_("Chưa đính kèm được: %(reason)s", reason=detail), "error")
    else:
        flash(_("Đã đính kèm %(n)s tệp vào hồ sơ.", n=len(added)), "success")
    return redirect(url_for("supervise.case", code=code[:32]), 303)


# -- administrators: document templates ----------------------------------------------------------


@bp.get("/quan-tri/mau-van-ban")
@policy("role:admin")
@login_required
def templates():
    return render_template("admin/document_templates.html",
                           templates=documents_service.list_templates(require_actor()))


def _template_page(kind: str, sections: dict | None = None, errors: dict | None = None, status: int = 200):
    current = documents_service.get_template(require_actor(), kind)
    return render_template("admin/document_template.html", template=current,
                           sections=sections if sections is not None else current["sections"],
                           errors=errors or {}, section_names=documents_service.SECTIONS), status


@bp.get("/quan-tri/mau-van-ban/<kind>")
@policy("role:admin")
@login_required
def template(kind: str):
    return _template_page(kind[:32])


@bp.post("/quan-tri/mau-van-ban/<kind>")
@policy("role:admin")
@login_required
def save_template(kind: str):
    kind = kind[:32]
    sections = {name: (request.form.get(name) or "")[:documents_service.SECTION_LIMITS[name] + 1] for name in documents_service.SECTIONS}
    try:
        saved = documents_service.save_template(require_actor(), kind, sections)
    except ServiceError as exc:
        if exc.status != 422:
            raise
        flash(exc.message, "error")
        return _template_page(kind, sections, exc.fields, 422)
    flash(_("Đã lưu mẫu văn bản (phiên bản %(v)s); áp dụng cho văn bản ban hành từ nay.", v=saved["version"]),
          "success")
    return redirect(url_for("documents.template", kind=kind), 303)


# -- API v1 (on the API blueprint: bearer tokens and JSON errors) ---------------------------------


def _api_token() -> str | None:
    return request.headers.get("X-Request-Token") or None


@api.bp.get("/requests/<code>/documents")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def api_documents(code: str):
    return jsonify(documents_service.list_documents(code[:32], _api_token(), current_actor()))


@api.bp.get("/requests/<code>/documents/<int:document_id>/<fmt>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def api_document_file(code: str, document_id: int, fmt: str):
    return _file(documents_service.download(code[:32], document_id, fmt, _api_token(), current_actor()))


@api.bp.get("/requests/<code>/attachments")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def api_attachments(code: str):
    return jsonify(attachments_service.list_attachments(code[:32], _api_token(), current_actor()))


@api.bp.get("/requests/<code>/attachments/<int:attachment_id>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def api_attachment_file(code: str, attachment_id: int):
    return _file(attachments_service.download(code[:32], attachment_id, _api_token(), current_actor()))


@api.bp.post("/requests/<code>/attachments")
@policy("official")
@accepts_files(attachments_service.MAX_FILES)
def api_attach(code: str):
    """An official adds signed scans to the case (multipart ``file``, repeatable; ``note``)."""
    note = request.form.get("note")
    added = attachments_service.attach(code[:32], files_of("file"), require_actor(), note)
    return jsonify({"items": added}), 201
