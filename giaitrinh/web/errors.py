"""Errors as API.md writes them for the API, as pages for people; never a 500 for bad input."""
from __future__ import annotations

import logging

from flask import jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from ..engine import db

from ..engine.clock import ClockError
from ..engine.definitions import InvalidDefinition
from ..engine.errors import ServiceError

log = logging.getLogger(__name__)

CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "validation_error",
         429: "rate_limited", 500: "internal_error", 503: "unavailable"}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.blueprint in ("api", "dev")


def error_response(status: int, message: str, fields: dict | None = None, code: str | None = None, **extra):
    if wants_json():
        body = {"code": code or CODES.get(status, "error"), "message": message}
        if fields:
            body["fields"] = fields
        body.update(extra)
        response = jsonify({"error": body})
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="giaitrinh"'
        return response
    try:
        return render_template("error.html", status=status, message=message, fields=fields or {}), status
    except Exception:  # noqa: BLE001 - an error page must not fail in turn
        log.exception("error page failed")
        return f"{status}: {message}", status, {"Content-Type": "text/plain; charset=utf-8"}


def init_app(app) -> None:
    @app.errorhandler(ServiceError)
    def _service(exc: ServiceError):
        if exc.status == 401 and not wants_json():
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        response = error_response(exc.status, exc.message, exc.fields, code=exc.code)
        retry_after = exc.extra.get("retry_after")
        if retry_after is not None:
            from ..engine import clock

            response = app.make_response(response)
            seconds = max(1, int((retry_after - clock.wall_now()).total_seconds()))
            response.headers["Retry-After"] = str(seconds)
        return response

    @app.errorhandler(InvalidDefinition)
    def _bpmn(exc: InvalidDefinition):
        return error_response(422, str(exc), code="invalid_bpmn", problems=[p.as_dict() for p in exc.problems])

    @app.errorhandler(ClockError)
    def _clock(exc: ClockError):
        return error_response(409 if "back" in str(exc) else 422, str(exc), {"now": str(exc)})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 413:
            message = "Dữ liệu gửi lên quá lớn (request body too large)"
        return error_response(exc.code or 500, message)

    @app.errorhandler(DBAPIError)
    def _database(exc: DBAPIError):
        # Nothing was committed (the transaction rolled back): say so and ask for a retry.
        if db.lost_race(exc):
            return error_response(409, "Yêu cầu vừa được người khác cập nhật, hãy thử lại (concurrent update, retry)")
        if db.unreachable(exc):
            log.warning("database unreachable on %s %s: %s", request.method, request.path, exc)
            response = error_response(503, "Hệ thống tạm thời gián đoạn, vui lòng thử lại sau ít phút "
                                           "(database unavailable, retry)")
            response = response if not isinstance(response, tuple) else app.make_response(response)
            response.headers["Retry-After"] = "5"
            return response
        return _unexpected(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "Lỗi hệ thống, vui lòng thử lại sau (internal error)")
