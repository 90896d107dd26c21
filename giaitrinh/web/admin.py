"""Administrators' pages: accounts with their roles in units, and redaction rules."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError
from ..engine.services import admin as admin_service
from .auth import login_required, require_actor
from .feedback import run_and_flash
from .policy import policy

bp = Blueprint("admin", __name__, url_prefix="/quan-tri")
ROLE_ROWS = 4


def _roles_from_form() -> list[dict]:
    roles = []
    for i in range(ROLE_ROWS):
        role = request.form.get(f"role_{i}") or ""
        if role:
            roles.append({"role": role[:32], "unit": (request.form.get(f"unit_{i}") or "")[:32] or None})
    return roles


def _render_users(errors: dict | None = None, form: dict | None = None, status: int = 200):
    actor = require_actor()
    return render_template("admin/users.html", users=admin_service.list_users(actor),
                           units=admin_service.list_units(actor), roles=admin_service.ROLES,
                           role_rows=ROLE_ROWS, errors=errors or {}, form=form or {}), status


@bp.get("/")
@policy("role:admin")
@login_required
def users():
    return _render_users()


@bp.post("/tai-khoan")
@policy("role:admin")
@login_required
def create_user():
    data = {k: (request.form.get(k) or "")[:300] for k in ("username", "full_name", "email", "password")}
    data["roles"] = _roles_from_form()
    try:
        created = admin_service.create_user(require_actor(), data)
    except ServiceError as exc:
        flash(exc.message, "error")
        data.pop("password")
        return _render_users(exc.fields, data, 422 if exc.status == 422 else exc.status)
    flash(_("Đã tạo tài khoản %(name)s.", name=created["username"]), "success")
    return redirect(url_for("admin.users"), 303)


def _act(action, success: str):
    run_and_flash(action, success)
    return redirect(url_for("admin.users"), 303)


@bp.post("/tai-khoan/<username>/vai-tro")
@policy("role:admin")
@login_required
def set_roles(username: str):
    return _act(lambda: admin_service.set_roles(require_actor(), username[:64], _roles_from_form()),
                _("Đã cập nhật vai trò của %(name)s.", name=username[:64]))


@bp.post("/tai-khoan/<username>/trang-thai")
@policy("role:admin")
@login_required
def set_active(username: str):
    active = request.form.get("active") == "1"
    return _act(lambda: admin_service.set_active(require_actor(), username[:64], active),
                _("Đã mở khóa tài khoản %(name)s.", name=username[:64]) if active
                else _("Đã khóa tài khoản %(name)s; mọi phiên đăng nhập đã kết thúc.", name=username[:64]))


@bp.post("/tai-khoan/<username>/mat-khau")
@policy("role:admin")
@login_required
def reset_password(username: str):
    password = (request.form.get("password") or "")[:300]
    return _act(lambda: admin_service.reset_password(require_actor(), username[:64], password),
                _("Đã đặt lại mật khẩu của %(name)s.", name=username[:64]))


@bp.get("/quy-tac-an")
@policy("role:admin")
@login_required
def rules():
    return render_template("admin/rules.html", rules=admin_service.list_rules(require_actor()), errors={}, form={})


@bp.post("/quy-tac-an")
@policy("role:admin")
@login_required
def add_rule():
    actor = require_actor()
    form = {"pattern": (request.form.get("pattern") or "")[:300], "note": (request.form.get("note") or "")[:500],
            "is_regex": request.form.get("is_regex") == "1"}
    try:
        admin_service.add_rule(actor, form["pattern"], form["is_regex"], form["note"])
    except ServiceError as exc:
        flash(exc.message, "error")
        return render_template("admin/rules.html", rules=admin_service.list_rules(actor), errors=exc.fields,
                               form=form), exc.status
    flash(_("Đã thêm quy tắc ẩn; áp dụng cho các lần công khai từ nay."), "success")
    return redirect(url_for("admin.rules"), 303)


@bp.post("/quy-tac-an/<int:rule_id>")
@policy("role:admin")
@login_required
def toggle_rule(rule_id: int):
    active = request.form.get("active") == "1"
    try:
        admin_service.set_rule_active(require_actor(), rule_id, active)
    except ServiceError as exc:
        flash(exc.message, "error")
    return redirect(url_for("admin.rules"), 303)
