"""Supervisors and heads of unit: the dashboard, the instance list, one case with its diagram and the
actions on it, bulk actions, and the process heatmap."""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError
from ..engine.services import attachments as attachments_service
from ..engine.services import documents as documents_service
from ..engine.services import requests as requests_service
from ..engine.services import supervision
from .auth import login_required, require_actor
from .feedback import run_and_flash
from .labels import STATUS, STEP
from .policy import policy

bp = Blueprint("supervise", __name__, url_prefix="/giam-sat")


@bp.get("/")
@policy("official")
@login_required
def dashboard():
    actor = require_actor()
    unit = (request.args.get("unit") or "").strip()[:32] or None
    page = supervision.overview(actor, unit=unit, show=request.args.get("show") or "overdue")
    return render_template("supervise/dashboard.html", counts=page["counts"], escalations=page["escalations"],
                           cases=page["cases"], show=page["show"], unit=unit,
                           units=sorted(actor.units(*supervision.SUPERVISORS)), board=page["board"])


# -- the instance list, saved filters, bulk actions ------------------------------------------------


def _form_filter(source) -> dict:
    return {name: source.get(name) for name in supervision.FILTER_FIELDS if source.get(name) not in (None, "")}


@bp.get("/ho-so/")
@policy("official")
@login_required
def instances():
    actor = require_actor()
    saved = supervision.list_filters(actor)
    raw = _form_filter(request.args)
    chosen = None
    if request.args.get("saved", "").isdigit():
        try:
            chosen = supervision.get_filter(actor, int(request.args["saved"]))
            raw = dict(chosen["params"])
        except ServiceError:
            chosen = None
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    errors: dict = {}
    try:
        criteria = supervision.parse_filter(raw)
        cases = supervision.list_instances(actor, page=page, per_page=50, **criteria)
    except ServiceError as exc:
        errors = exc.fields or {"filter": exc.message}
        criteria = {}
        cases = supervision.list_instances(actor, page=page, per_page=50)
    pages = max(1, (cases["total"] + 49) // 50)
    return render_template("supervise/instances.html", cases=cases, criteria=criteria, raw=raw, errors=errors,
                           saved=saved, chosen=chosen, page=page, pages=pages,
                           units=sorted(u for u in actor.units(*supervision.SUPERVISORS) if u != "*"),
                           reasons=supervision.STUCK_REASONS, roles=supervision.SHAREABLE_ROLES,
                           people=_bulk_people(actor), is_admin=actor.has_role("admin"),
                           inactive_days=cases.get("inactive_days"), actions=supervision.BULK_ACTIONS,
                           statuses=list(STATUS), steps=list(STEP), bulk_max=supervision.BULK_MAX)


def _bulk_people(actor) -> list[tuple[str, str]]:
    return supervision.assignable_officials(actor)


@bp.post("/bo-loc")
@policy("official")
@login_required
def save_filter():
    actor = require_actor()
    params = _form_filter(request.form)
    created = {}

    def save():
        created.update(supervision.save_filter(actor, request.form.get("name") or "", params,
                                               request.form.get("shared_with_role") or None))

    run_and_flash(save, _("Đã lưu bộ lọc."))
    if created:
        return redirect(url_for("supervise.instances", saved=created["id"]), 303)
    return redirect(url_for("supervise.instances", **params), 303)


@bp.post("/bo-loc/<int:filter_id>/xoa")
@policy("official")
@login_required
def delete_filter(filter_id: int):
    run_and_flash(lambda: supervision.delete_filter(require_actor(), filter_id), _("Đã xóa bộ lọc."))
    return redirect(url_for("supervise.instances"), 303)


@bp.post("/cau-hinh")
@policy("role:admin")
@login_required
def settings():
    run_and_flash(lambda: supervision.set_inactive_days(require_actor(), request.form.get("inactive_days") or ""),
                  _("Đã lưu cấu hình."))
    return redirect(url_for("supervise.instances", stuck="true"), 303)


@bp.post("/hang-loat")
@policy("official")
@login_required
def bulk():
    """Without JavaScript: the whole batch in one answer (the page's script sends it in chunks instead)."""
    actor = require_actor()
    codes = [c[:32] for c in request.form.getlist("codes") if c][:supervision.BULK_MAX]
    try:
        if request.form.get("all_matching"):
            criteria = supervision.parse_filter({name: request.form.get(f"f_{name}")
                                                 for name in supervision.FILTER_FIELDS})
            found = supervision.list_instances(actor, per_page=supervision.BULK_MAX, **criteria)["items"]
            codes = [item["code"] for item in found]
        result = supervision.bulk(actor, request.form.get("action"), codes, request.form.get("note"),
                                  request.form.get("assignee") or None)
    except ServiceError as exc:
        detail = "; ".join(exc.fields.values()) if exc.fields else exc.message
        return render_template("supervise/bulk_result.html", result=None, error=detail), exc.status
    return render_template("supervise/bulk_result.html", result=result, error=None)


# -- one case -------------------------------------------------------------------------------------


@bp.get("/ho-so/<code>")
@policy("official")
@login_required
def case(code: str):
    actor = require_actor()
    view = requests_service.view(code[:32], None, actor)
    try:
        failed = supervision.incidents(view["code"], actor)
    except ServiceError:  # an official who may look but not act on the case
        failed = []
    console = supervision.case_console(view["code"], actor)
    try:
        trail = supervision.trail(view["code"], actor)
        reasons = supervision.stuck_reasons(view["code"], actor)
    except ServiceError:
        trail, reasons = None, []
    targets = supervision.move_targets(view["code"], actor) if console["is_admin"] else []
    files = {"documents": documents_service.list_documents(view["code"], None, actor)["items"],
             "attachments": attachments_service.list_attachments(view["code"], None, actor)["items"]}
    return render_template("supervise/case.html", case=view, incidents=failed,
                           grounds=supervision.SUSPENSION_GROUNDS, console=console, trail=trail,
                           reasons=reasons, termination_grounds=supervision.TERMINATION_GROUNDS,
                           move_targets=targets, files=files, accept=attachments_service.ACCEPT)


@bp.get("/ho-so/<code>/so-do.json")
@policy("official")
@login_required
def case_diagram(code: str):
    try:
        return jsonify(supervision.diagram(code[:32], require_actor()))
    except ServiceError as exc:
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status


def _act(code: str, action, success: str):
    run_and_flash(action, success)
    return redirect(url_for("supervise.case", code=code), 303)


def _note() -> str | None:
    return (request.form.get("note") or "").strip() or None


@bp.post("/ho-so/<code>/tam-dinh-chi")
@policy("official")
@login_required
def suspend(code: str):
    ground = request.form.get("ground") or ""
    return _act(code, lambda: supervision.suspend(code[:32], require_actor(), ground, _note()),
                _("Đã tạm đình chỉ giải trình; thời hạn ngừng tính."))


@bp.post("/ho-so/<code>/tiep-tuc")
@policy("official")
@login_required
def resume(code: str):
    return _act(code, lambda: supervision.resume(code[:32], require_actor(), _note()),
                _("Đã tiếp tục giải trình; thời hạn được tính lại."))


@bp.post("/ho-so/<code>/su-co/<int:job_id>/thu-lai")
@policy("official")
@login_required
def retry_incident(code: str, job_id: int):
    return _act(code, lambda: supervision.retry_incident(code[:32], job_id, require_actor(), _note()),
                _("Đã đưa lại vào hàng đợi; hệ thống sẽ chạy lại ngay."))


@bp.post("/ho-so/<code>/giao-lai")
@policy("official")
@login_required
def reassign(code: str):
    return _act(code, lambda: supervision.reassign(code[:32], require_actor(), request.form.get("assignee") or "",
                                                   _note(), request.form.get("task_id") or None),
                _("Đã giao lại công việc."))


@bp.post("/ho-so/<code>/them-nguoi")
@policy("official")
@login_required
def add_candidate(code: str):
    return _act(code, lambda: supervision.add_candidate(code[:32], require_actor(), request.form.get("username") or "",
                                                        _note(), request.form.get("task_id") or None),
                _("Đã thêm người cùng xử lý công việc."))


@bp.post("/ho-so/<code>/don-doc")
@policy("official")
@login_required
def urge(code: str):
    return _act(code, lambda: supervision.urge(code[:32], require_actor(), _note(), request.form.get("task_id") or None),
                _("Đã gửi đôn đốc."))


@bp.post("/ho-so/<code>/dinh-chi")
@policy("official")
@login_required
def terminate(code: str):
    return _act(code, lambda: supervision.terminate(code[:32], require_actor(), request.form.get("ground") or "", _note()),
                _("Đã đình chỉ giải trình."))


@bp.post("/ho-so/<code>/chuyen-buoc")
@policy("role:admin")
@login_required
def move_token(code: str):
    return _act(code, lambda: supervision.move_token(code[:32], require_actor(), request.form.get("to") or "", _note()),
                _("Đã chuyển hồ sơ về bước đã chọn."))


# -- the heatmap ------------------------------------------------------------------------------------


def _heatmap_args():
    unit = (request.args.get("unit") or "").strip()[:32] or None
    definition = request.args.get("definition", "")
    return unit, int(definition) if definition.isdigit() else None


@bp.get("/ban-do-nhiet")
@policy("official")
@login_required
def heatmap():
    actor = require_actor()
    unit, definition = _heatmap_args()
    data = supervision.heatmap(actor, definition_id=definition, unit=unit)
    totals = {k: sum(n[k] for n in data["nodes"].values()) for k in ("open", "overdue", "incidents")}
    return render_template("supervise/heatmap.html", data=data, unit=unit, totals=totals,
                           units=sorted(u for u in actor.units(*supervision.SUPERVISORS) if u != "*"),
                           json_url=url_for("supervise.heatmap_json", unit=unit, definition=definition))


@bp.get("/ban-do-nhiet.json")
@policy("official")
@login_required
def heatmap_json():
    unit, definition = _heatmap_args()
    try:
        return jsonify(supervision.heatmap(require_actor(), definition_id=definition, unit=unit))
    except ServiceError as exc:
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status
