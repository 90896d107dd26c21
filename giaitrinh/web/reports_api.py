"""API v1 routes of the reports and the open-data feed, on the ``api`` blueprint (bearer tokens).

Kept apart from ``api.py`` so the reports can grow without touching the rest of the API.
"""
from __future__ import annotations

from flask import Response, jsonify, request

from ..engine.errors import ValidationFailed
from ..engine.services import opendata, reports
from .api import _int_arg, _paging, _str_arg, bp
from .auth import require_actor
from .policy import policy


def file_response(content: bytes, media_type: str, filename: str) -> Response:
    response = Response(content, mimetype=media_type.split(";")[0])
    response.headers["Content-Type"] = media_type
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/reports/monthly")
@policy("official")
def monthly_report():
    actor = require_actor()
    fmt = _str_arg("format", 8) or "json"
    if fmt not in reports.FORMATS:
        raise ValidationFailed("định dạng không hợp lệ (invalid format)", {"format": "json, xlsx hoặc csv"})
    unit, month = _str_arg("unit", 32), _str_arg("month", 7) or reports.current_month()
    if fmt == "json":
        return jsonify(reports.monthly(actor, unit, month))
    return file_response(*reports.monthly_file(actor, unit, month, fmt))


@bp.get("/reports/yearly")
@policy("official")
def yearly_report():
    actor = require_actor()
    year = _str_arg("year", 4) or reports.current_month()[:4]
    return jsonify(reports.yearly(actor, _str_arg("unit", 32), year))


@bp.get("/reports/unhappy-ratings")
@policy("official")
def unhappy_ratings():
    actor = require_actor()
    return jsonify(reports.unhappy_ratings(actor, _str_arg("unit", 32), month=_str_arg("month", 7),
                                           max_score=_int_arg("max_score", reports.UNHAPPY_MAX_SCORE, 1, 5),
                                           **_paging()))


@bp.get("/export/cases")
@policy("official")
def export_cases():
    actor = require_actor()
    return jsonify(opendata.export_changes(actor, since=request.args.get("since", "")[:40] or None,
                                           limit=_int_arg("limit", 200, 1, opendata.EXPORT_LIMIT)))
