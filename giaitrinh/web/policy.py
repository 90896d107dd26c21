"""Every route says who may call it; a route that says nothing is refused (deny by default).

This is the coarse gate at the door. The engine's services check the fine part
(this role in this unit, this task's assignee, this request's tracking token),
so a route can never be the only thing standing between a user and a case.

Policies:
  ``public``       anyone (the portal, published answers, sign-in, the API document);
  ``token``        a citizen holding a request's tracking token, or a signed-in official
                   (checked by the service: the token must match that request);
  ``official``     any signed-in official; the service decides by role and unit;
  ``role:<name>``  a signed-in official holding that role in at least one unit;
  ``dev``          the development clock, registered only when GIAITRINH_DEV_CLOCK=1.
"""
from __future__ import annotations

from flask import current_app, redirect, request, url_for

from ..engine.errors import Forbidden, Unauthenticated

KINDS = ("public", "token", "official", "dev")
# Flask's own static file view cannot carry an attribute: it is named here instead.
BUILTIN = {"static": "public"}


def policy(kind: str):
    if kind not in KINDS and not kind.startswith("role:"):
        raise ValueError(f"unknown policy {kind!r}")

    def mark(view):
        view.policy = kind
        return view

    return mark


def of(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    if endpoint in BUILTIN:
        return BUILTIN[endpoint]
    view = current_app.view_functions.get(endpoint)
    return getattr(view, "policy", None)


def _enforce() -> None:
    if request.endpoint is None:  # 404 or 405: nothing to guard
        return
    kind = of(request.endpoint)
    if kind is None:
        raise Forbidden("đường dẫn này chưa được cấp chính sách truy cập (no access policy)")
    if kind in ("public", "token", "dev"):
        return
    from .auth import current_actor

    actor = current_actor()
    if actor is None:
        if request.path.startswith("/api/"):
            raise Unauthenticated("cần đăng nhập (authentication required)")
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if kind.startswith("role:") and not actor.has_role(kind.split(":", 1)[1]):
        raise Forbidden("tài khoản không có vai trò này (role required)")
    return None


def init_app(app) -> None:
    app.before_request(_enforce)
