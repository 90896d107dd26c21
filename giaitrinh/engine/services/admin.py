"""Administrators' use cases: accounts, roles in units, disabling, redaction rules.

Every change is audited. Accounts are never deleted: a disabled user keeps their name
on every task and audit event they ever touched, and can be enabled again.
"""
from __future__ import annotations

import re

from sqlalchemy import select

from .. import audit, clock, db, redaction
from ..accounts import Actor, hash_password, sign_out_everywhere
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..models import Membership, RedactionRule, Unit, User

# exporter: the technical account of a national accountability database (GET /api/v1/export/cases)
ROLES = ("reception", "head", "official", "supervisor", "designer", "admin", "exporter")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD = 10


def _require_admin(actor: Actor) -> None:
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị viên hệ thống (administrators only)")


def _user(session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username).with_for_update()).scalar_one_or_none()
    if user is None:
        raise NotFound(f"không có tài khoản {username} (unknown user)")
    return user


def _check_roles(session, roles) -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """[(role, unit code or None for every unit)], or field errors."""
    errors: dict[str, str] = {}
    clean: list[tuple[str, str | None]] = []
    if not isinstance(roles, list) or not roles:
        return [], {"roles": "Chọn ít nhất một vai trò (at least one role)."}
    units = set(session.execute(select(Unit.code)).scalars())
    for i, item in enumerate(roles):
        role, unit = (item.get("role"), item.get("unit")) if isinstance(item, dict) else (None, None)
        if role not in ROLES:
            errors[f"roles.{i}.role"] = "Một trong: " + ", ".join(ROLES)
        elif unit not in (None, "") and unit not in units:
            errors[f"roles.{i}.unit"] = f"Không có đơn vị {unit} (unknown unit)."
        else:
            pair = (role, unit or None)
            if pair not in clean:
                clean.append(pair)
    return clean, errors


def _check_password(password, field: str = "password") -> dict[str, str]:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 256:
        return {field: f"Mật khẩu từ {MIN_PASSWORD} đến 256 ký tự (10 to 256 characters)."}
    return {}


def _summary(user: User) -> dict:
    return {"username": user.username, "full_name": user.full_name, "email": user.email,
            "active": user.is_active, "locked_until": user.locked_until.isoformat() if user.locked_until else None,
            "roles": [{"role": m.role, "unit": m.unit_code} for m in user.memberships]}


def list_users(actor: Actor) -> list[dict]:
    _require_admin(actor)
    with db.read_only() as session:
        return [_summary(u) for u in session.execute(select(User).order_by(User.username)).scalars()]


def list_units(actor: Actor) -> list[tuple[str, str]]:
    _require_admin(actor)
    with db.read_only() as session:
        return [(u.code, u.name) for u in session.execute(select(Unit).order_by(Unit.code)).scalars()]


def create_user(actor: Actor, data: dict) -> dict:
    _require_admin(actor)
    username = (data.get("username") or "").strip().lower() if isinstance(data.get("username"), str) else ""
    full_name = (data.get("full_name") or "").strip() if isinstance(data.get("full_name"), str) else ""
    email = (data.get("email") or "").strip() or None if isinstance(data.get("email"), (str, type(None))) else None
    errors: dict[str, str] = {}
    if not USERNAME.match(username):
        errors["username"] = "3-64 ký tự: chữ thường không dấu, số, dấu chấm, gạch (a-z 0-9 . _ -)."
    if not full_name or len(full_name) > 255 or "\x00" in full_name:
        errors["full_name"] = "Bắt buộc, tối đa 255 ký tự (required)."
    if email is not None and (len(email) > 255 or not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email)):
        errors["email"] = "Địa chỉ thư điện tử không hợp lệ (invalid email)."
    errors.update(_check_password(data.get("password")))
    with db.transaction() as session:
        roles, role_errors = _check_roles(session, data.get("roles"))
        errors.update(role_errors)
        if errors:
            raise ValidationFailed("tài khoản chưa hợp lệ (invalid account)", errors)
        if session.execute(select(User.id).where(User.username == username)).first():
            raise Conflict(f"tài khoản {username} đã có (username taken)", {"username": "Đã có người dùng tên này."})
        user = User(username=username, full_name=full_name, email=email, password_hash=hash_password(data["password"]),
                    is_active=True, created_at=clock.now())
        session.add(user)
        session.flush()
        for role, unit in roles:
            session.add(Membership(user_id=user.id, role=role, unit_code=unit))
        session.flush()
        session.refresh(user)
        audit.record(session, "user_created", actor=actor.username, public=False,
                     after={"username": username, "roles": [list(r) for r in roles]})
        return _summary(user)


def set_roles(actor: Actor, username: str, roles) -> dict:
    _require_admin(actor)
    with db.transaction() as session:
        user = _user(session, username)
        clean, errors = _check_roles(session, roles)
        if errors:
            raise ValidationFailed("vai trò chưa hợp lệ (invalid roles)", errors)
        if user.username == actor.username and ("admin", None) not in clean:
            raise Conflict("không thể tự bỏ quyền quản trị của mình (cannot drop your own admin role)")
        before = [[m.role, m.unit_code] for m in user.memberships]
        user.memberships.clear()
        session.flush()
        for role, unit in clean:
            user.memberships.append(Membership(role=role, unit_code=unit))
        user.session_epoch += 1  # new roles take effect at the next sign-in
        session.flush()
        audit.record(session, "roles_changed", actor=actor.username, public=False,
                     before={"username": username, "roles": before},
                     after={"username": username, "roles": [list(r) for r in clean]})
        return _summary(user)


def set_active(actor: Actor, username: str, active: bool) -> dict:
    _require_admin(actor)
    with db.transaction() as session:
        user = _user(session, username)
        if user.username == actor.username and not active:
            raise Conflict("không thể tự khóa tài khoản của mình (cannot disable yourself)")
        if user.is_active != active:
            user.is_active = active
            if not active:
                sign_out_everywhere(session, user)
            audit.record(session, "user_enabled" if active else "user_disabled", actor=actor.username, public=False,
                         after={"username": username})
        return _summary(user)


def reset_password(actor: Actor, username: str, password) -> dict:
    _require_admin(actor)
    errors = _check_password(password)
    if errors:
        raise ValidationFailed("mật khẩu chưa hợp lệ (invalid password)", errors)
    with db.transaction() as session:
        user = _user(session, username)
        user.password_hash = hash_password(password)
        user.failed_logins = 0
        user.locked_until = None
        sign_out_everywhere(session, user)
        audit.record(session, "password_reset", actor=actor.username, public=False, after={"username": username})
        return _summary(user)


# -- redaction rules (Alaveteli's censor rules) -------------------------------------------


def list_rules(actor: Actor) -> list[dict]:
    _require_admin(actor)
    with db.read_only() as session:
        return [{"id": r.id, "pattern": r.pattern, "is_regex": r.is_regex, "note": r.note, "active": r.active,
                 "created_by": r.created_by, "created_at": r.created_at.isoformat()}
                for r in session.execute(select(RedactionRule).order_by(RedactionRule.id.desc())).scalars()]


def add_rule(actor: Actor, pattern, is_regex: bool, note) -> dict:
    _require_admin(actor)
    pattern = pattern.strip() if isinstance(pattern, str) else ""
    note = note.strip()[:500] if isinstance(note, str) else ""
    problem = redaction.check_rule(pattern, bool(is_regex))
    if problem:
        raise ValidationFailed("quy tắc chưa hợp lệ (invalid rule)", {"pattern": problem})
    with db.transaction() as session:
        rule = RedactionRule(pattern=pattern, is_regex=bool(is_regex), note=note, active=True,
                             created_by=actor.username, created_at=clock.now())
        session.add(rule)
        session.flush()
        audit.record(session, "redaction_rule_added", actor=actor.username, public=False,
                     after={"id": rule.id, "pattern": pattern, "is_regex": bool(is_regex), "note": note})
        return {"id": rule.id}


def set_rule_active(actor: Actor, rule_id: int, active: bool) -> None:
    _require_admin(actor)
    with db.transaction() as session:
        rule = session.get(RedactionRule, rule_id)
        if rule is None:
            raise NotFound("không có quy tắc này (unknown rule)")
        rule.active = active
        audit.record(session, "redaction_rule_enabled" if active else "redaction_rule_disabled",
                     actor=actor.username, public=False, after={"id": rule_id})
