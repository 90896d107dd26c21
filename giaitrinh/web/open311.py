"""Open311 GeoReport v2, read-only, over published cases (so existing civic tools can read them).

JSON only (``.json`` paths); errors in the specification's shape: ``[{"code", "description"}]``.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..engine.errors import ServiceError, ValidationFailed
from ..engine.services import opendata
from .policy import policy

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")


def _arg(name: str, max_len: int = 400) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len or "\x00" in value:
        raise ValidationFailed(f"{name} không hợp lệ", {name: f"at most {max_len} characters"})
    return value


def _int(name: str, default: int, high: int) -> int:
    value = _arg(name, 10)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise ValidationFailed(f"{name} không hợp lệ", {name: f"integer 1..{high}"})
    return int(value)


@bp.errorhandler(ServiceError)
def _error(exc: ServiceError):
    status = 400 if exc.status == 422 else exc.status
    detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
    response = jsonify([{"code": status, "description": exc.message + (f" ({detail})" if detail else "")}])
    response.status_code = status
    return response


@bp.get("/services.json")
@policy("public")
def services():
    return jsonify(opendata.open311_services())


@bp.get("/requests.json")
@policy("public")
def requests_list():
    # At most 200 pages: a client wanting more narrows start_date/end_date, so no anonymous call
    # makes the database skip past hundreds of thousands of rows.
    return jsonify(opendata.open311_requests(
        service_request_id=_arg("service_request_id", 3400), service_code=_arg("service_code", 200),
        start_date=_arg("start_date", 40), end_date=_arg("end_date", 40), status=_arg("status", 20),
        page=_int("page", 1, 200), page_size=_int("page_size", opendata.OPEN311_MAX, opendata.OPEN311_MAX)))


@bp.get("/requests/<code>.json")
@policy("public")
def request_one(code: str):
    return jsonify(opendata.open311_request(code[:32]))


@bp.get("/<path:rest>")
@policy("public")
def unknown(rest: str):
    """Anything else under /open311/v2 answers in the specification's error shape, not an HTML page."""
    response = jsonify([{"code": 404, "description": "không có tài nguyên này (unknown resource; JSON only)"}])
    response.status_code = 404
    return response
