"""Officials: one inbox sorted by urgency, and each task's form rendered from its JSON Schema."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import Conflict, Forbidden, ServiceError, ValidationFailed
from ..engine.services import attachments as attachments_service
from ..engine.services import documents as documents_service
from ..engine.services import tasks as tasks_service
from . import schema_form
from .auth import login_required, require_actor
from .policy import policy

bp = Blueprint("tasks", __name__, url_prefix="/cong-viec")

PER_PAGE = 50
SCOPES = ("mine", "unit", "all")


def _page() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


@bp.get("/")
@policy("official")
@login_required
def inbox():
    actor = require_actor()
    scope = request.args.get("scope") if request.args.get("scope") in SCOPES else "unit"
    overdue = True if request.args.get("overdue") == "1" else None
    page = _page()
    try:
        result = tasks_service.list_tasks(actor, scope=scope, overdue=overdue, page=page, per_page=PER_PAGE)
    except Forbidden as exc:
        flash(exc.message, "error")
        return redirect(url_for("tasks.inbox"))
    pages = max(1, -(-result["total"] // PER_PAGE))
    return render_template("tasks/inbox.html", result=result, scope=scope, overdue=overdue, page=page, pages=pages,
                           may_see_all=any(actor.roles.get(r) for r in tasks_service.SUPERVISING_ROLES))


def _render(task_id: str, values=None, errors=None, message=None, status=200):
    actor = require_actor()
    task = tasks_service.get_task(task_id, actor)
    fields = schema_form.build(task["form"], values if values is not None else task.get("data"), errors)
    code = task["request_code"]
    try:
        files = {"documents": documents_service.list_documents(code, None, actor)["items"],
                 "attachments": attachments_service.list_attachments(code, None, actor)["items"]}
    except ServiceError:  # an official of a unit above may act on the task but not read the case file
        files = None
    return render_template("tasks/task.html", task=task, fields=fields, message=message, errors=errors or {},
                           actor=actor, files=files), status


@bp.get("/<task_id>")
@policy("official")
@login_required
def show(task_id: str):
    return _render(task_id)


@bp.post("/<task_id>")
@policy("official")
@login_required
def complete(task_id: str):
    actor = require_actor()
    task = tasks_service.get_task(task_id, actor)
    data, errors = schema_form.parse(task["form"], request.form)
    if errors:
        return _render(task_id, data, errors, _("Biểu mẫu chưa hợp lệ: hãy sửa các trường được đánh dấu."), 422)
    try:
        result = tasks_service.complete(task_id, data, actor)
    except ValidationFailed as exc:
        return _render(task_id, data, exc.fields, exc.message if not exc.fields else
                       _("Biểu mẫu chưa hợp lệ: hãy sửa các trường được đánh dấu."), 422)
    except Conflict as exc:
        return _render(task_id, data, None, exc.message, 409)
    flash(_("Đã hoàn thành: %(title)s (%(code)s).", title=task["title"], code=task["request_code"]), "success")
    # Carry on with the next step when it falls to the same person (e.g. explain after claiming).
    for following in result.get("next_tasks", []):
        if following.get("assignee") == actor.username:
            return redirect(url_for("tasks.show", task_id=following["id"]), 303)
    return redirect(url_for("tasks.inbox"), 303)


@bp.post("/<task_id>/nhan")
@policy("official")
@login_required
def claim(task_id: str):
    try:
        tasks_service.claim(task_id, require_actor())
    except Conflict as exc:
        flash(exc.message, "error")
    else:
        flash(_("Bạn đã nhận xử lý công việc này."), "success")
    return redirect(url_for("tasks.show", task_id=task_id), 303)
