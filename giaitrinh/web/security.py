"""CSRF for the cookie-authenticated pages and the security headers every answer carries."""
from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_token() -> str:
    token = session.get("_csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["_csrf"] = token
    return token


def _check_csrf() -> None:
    if request.method in SAFE_METHODS:
        return
    if request.blueprint in ("api", "dev") or request.path.startswith("/api/"):
        # A bearer token or a tracking token cannot be sent by another site's page; the
        # session cookie can, so an API call riding on it must carry the CSRF header too.
        if request.headers.get("Authorization", "").lower().startswith("bearer ") or not session.get("user_id"):
            return
        sent = request.headers.get("X-CSRF-Token") or ""
    else:
        # No session token means no form of ours was ever loaded: refuse before parsing the body
        # (an upload view allows ~50 MB, and nobody signed-in or not should make us read it for nothing).
        if not session.get("_csrf"):
            abort(400, description="Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ (CSRF check failed). Hãy tải lại trang.")
        sent = request.form.get("_csrf") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("_csrf") or ""
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ (CSRF check failed). Hãy tải lại trang.")


def _headers(response):
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def init_app(app) -> None:
    app.before_request(_check_csrf)
    app.after_request(_headers)
