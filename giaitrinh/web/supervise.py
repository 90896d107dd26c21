"""Supervisors and heads of unit: what is late, what is stuck, and the art. 14 actions on a case."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError
from ..engine.services import attachments as attachments_service
from ..engine.services import documents as documents_service
from ..engine.services import requests as requests_service
from ..engine.services import supervision
from ..engine.services import tasks as tasks_service
from .auth import login_required, require_actor
from .feedback import run_and_flash
from .policy import policy

bp = Blueprint("supervise", __name__, url_prefix="/giam-sat")

FILTERS = {
    "overdue": {"overdue": True},
    "stuck": {"stuck": True},
    "suspended": {"status": "suspended"},
    "open": {"closed": False},
    "all": {},
}


@bp.get("/")
@policy("official")
@login_required
def dashboard():
    actor = require_actor()
    unit = (request.args.get("unit") or "").strip()[:32] or None
    show = request.args.get("show") if request.args.get("show") in FILTERS else "overdue"
    counts = {name: supervision.list_instances(actor, unit=unit, per_page=1, **criteria)["total"]
              for name, criteria in FILTERS.items()}
    escalations = supervision.list_escalations(actor, open_only=True, unit=unit, per_page=100)
    cases = supervision.list_instances(actor, unit=unit, per_page=200, **FILTERS[show])
    return render_template("supervise/dashboard.html", counts=counts, escalations=escalations, cases=cases,
                           show=show, unit=unit, units=sorted(actor.units(*supervision.SUPERVISORS)))


@bp.get("/ho-so/<code>")
@policy("official")
@login_required
def case(code: str):
    actor = require_actor()
    view = requests_service.view(code[:32], None, actor)
    open_tasks = tasks_service.list_tasks(actor, scope="unit", request_code=view["code"], per_page=50)["items"] \
        if actor.is_official else []
    try:
        failed = supervision.incidents(view["code"], actor)
    except ServiceError:  # an official who may look but not act on the case
        failed = []
    files = {"documents": documents_service.list_documents(view["code"], None, actor)["items"],
             "attachments": attachments_service.list_attachments(view["code"], None, actor)["items"]}
    return render_template("supervise/case.html", case=view, open_tasks=open_tasks, incidents=failed,
                           grounds=supervision.SUSPENSION_GROUNDS, files=files, accept=attachments_service.ACCEPT)


def _act(code: str, action, success: str):
    run_and_flash(action, success)
    return redirect(url_for("supervise.case", code=code), 303)


@bp.post("/ho-so/<code>/tam-dinh-chi")
@policy("official")
@login_required
def suspend(code: str):
    ground = request.form.get("ground") or ""
    note = (request.form.get("note") or "").strip() or None
    return _act(code, lambda: supervision.suspend(code[:32], require_actor(), ground, note),
                _("Đã tạm đình chỉ giải trình; thời hạn ngừng tính."))


@bp.post("/ho-so/<code>/tiep-tuc")
@policy("official")
@login_required
def resume(code: str):
    note = (request.form.get("note") or "").strip() or None
    return _act(code, lambda: supervision.resume(code[:32], require_actor(), note),
                _("Đã tiếp tục giải trình; thời hạn được tính lại."))


@bp.post("/ho-so/<code>/su-co/<int:job_id>/thu-lai")
@policy("official")
@login_required
def retry_incident(code: str, job_id: int):
    note = (request.form.get("note") or "").strip() or None
    return _act(code, lambda: supervision.retry_incident(code[:32], job_id, require_actor(), note),
                _("Đã đưa lại vào hàng đợi; hệ thống sẽ chạy lại ngay."))
