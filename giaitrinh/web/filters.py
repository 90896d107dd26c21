"""Template filters: instants in local time, and how urgent a deadline looks."""
from __future__ import annotations

from datetime import datetime

from ..engine.calendar import LOCAL_TZ


def _parse(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def localtime(value) -> str:
    """``30/11/2026 23:59`` in Asia/Ho_Chi_Minh, the way Vietnamese documents write time."""
    when = _parse(value)
    return when.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M") if when else ""


def localdate(value) -> str:
    when = _parse(value)
    return when.astimezone(LOCAL_TZ).strftime("%d/%m/%Y") if when else ""


def urgency(days_left, overdue: bool = False) -> str:
    """A CSS class: late, due within two working days, or comfortable."""
    if overdue or (days_left is not None and days_left < 0):
        return "late"
    if days_left is None:
        return "none"
    return "soon" if days_left <= 2 else "ok"


def compact(value, limit: int = 200) -> str:
    """A before/after value of the audit trail in one short line (JSON for structures)."""
    import json

    if value is None:
        return "∅"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def register(app) -> None:
    app.add_template_filter(compact)
    app.add_template_filter(localtime)
    app.add_template_filter(localdate)
    app.add_template_filter(urgency)
