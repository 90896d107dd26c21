"""Open data: the change feed a national accountability database pulls, and Open311 GeoReport v2.

Nothing here carries personal data: no requester name, address, phone or email, no request
content, no rating comment. A subject is published text when the case is published, and the
subject redacted (``redaction``) otherwise; explanations appear only once published.

Export rights: the ``exporter`` role (a technical account for the national database or a
city's data platform) or ``admin``, each in the units it is granted for (a role held in a unit
covers the units below it; held for every unit, everything).

The feed's cursor is the id of the last audit event returned. Audit events are appended one at a
time under the lock of the chain's head row (``audit.record``), so ids are handed out in commit
order: a client that asks again with ``next`` gets each change exactly once, never one that
committed behind its back with a smaller id.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from .. import calendar as cal, clock, db, redaction
from ..accounts import ALL_UNITS, Actor
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import AuditEvent, Definition, Request
from . import _common
from ._common import iso
from .requests import PUBLIC_EVENTS

EXPORT_ROLES = ("exporter", "admin")
EXPORT_LIMIT = 1000
# The actions of the trail that are changes of a case (the rest are looks, claims, sign-ins...).
CHANGE_EVENTS = tuple(PUBLIC_EVENTS) + ("approved", "returned", "publication_declined", "escalation_handled",
                                         "retention_purged")

SERVICE_NAMES = {"giai_trinh": ("Yêu cầu giải trình",
                                "Yêu cầu cơ quan nhà nước giải trình về quyết định, hành vi (Nghị định 59/2019/NĐ-CP)")}


def _parse_cursor(since: Any) -> int:
    if since is None or since == "":
        return 0
    if not isinstance(since, str) or not since.isdigit() or len(since) > 18:
        raise ValidationFailed("con trỏ không hợp lệ (invalid cursor)",
                               {"since": "Giá trị 'next' của lần gọi trước (the 'next' of the previous answer)."})
    return int(since)


def _redacted_case(request: Request, rules: list[redaction.Rule], unit_name: str) -> dict:
    published = request.published_at is not None and request.published_text
    if published:
        subject = request.published_text.get("subject", "")
    else:
        subject, _ = redaction.redact_report(request.subject, name=request.requester_name, phone=request.requester_phone,
                                             email=request.requester_email, address=request.requester_address,
                                             rules=rules)
    case = {
        "code": request.code, "unit": request.unit_code, "unit_name": unit_name, "status": request.status,
        "subject": subject, "channel": request.channel, "requester_kind": request.requester_kind,
        "received_at": iso(request.received_at), "acknowledged_at": iso(request.acknowledged_at),
        "decision": request.decision, "refusal_ground": request.refusal_ground,
        "deadlines": dict(request.deadlines or {}), "overdue": bool(request.overdue),
        "extended": bool(request.extended), "suspended": request.suspended_at is not None,
        "explained_at": iso(request.explained_at), "explain_due_at": iso(request.explain_due_at),
        "explained_on_time": (request.explained_at <= request.explain_due_at)
        if request.explained_at and request.explain_due_at else None,
        "published_at": iso(request.published_at), "closed": bool(request.closed), "closed_at": iso(request.closed_at),
        "rating_score": request.rating_score,
    }
    if published:
        case["explanation"] = {k: request.published_text.get(k, "") for k in ("legal_basis", "content")}
    return case


def export_changes(actor: Actor, since: Any = None, limit: int = 200) -> dict:
    """Every change of a case after ``since``, oldest first, each with the case as it is now, redacted."""
    units = actor.units(*EXPORT_ROLES)
    if not units:
        raise Forbidden("chỉ tài khoản kết nối dữ liệu (exporter) hoặc quản trị được xuất dữ liệu (export rights required)")
    after = _parse_cursor(since)
    if not isinstance(limit, int) or not 1 <= limit <= EXPORT_LIMIT:
        raise ValidationFailed("số bản ghi không hợp lệ", {"limit": f"integer 1..{EXPORT_LIMIT}"})
    with db.read_only() as session:
        query = (select(AuditEvent, Request).join(Request, Request.id == AuditEvent.request_id)
                 .where(AuditEvent.id > after, AuditEvent.action.in_(CHANGE_EVENTS)))
        if ALL_UNITS not in units:
            query = query.where(Request.unit_code.in_(sorted(units)))
        rows = session.execute(query.order_by(AuditEvent.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        rules = _common.redaction_rules(session) if rows else []
        items = []
        for event, request in rows:
            items.append({
                "id": str(event.id), "at": iso(event.at), "event": event.action,
                "label": PUBLIC_EVENTS.get(event.action, event.action), "step": event.step,
                "status_after": (event.after or {}).get("status") if isinstance(event.after, dict) else None,
                "case": _redacted_case(request, rules, _common.unit_name(session, request.unit_code)),
            })
    return {"items": items, "next": items[-1]["id"] if items else str(after), "has_more": more}


# -- Open311 GeoReport v2 ----------------------------------------------------------------------


def _service(key: str) -> dict:
    name, description = SERVICE_NAMES.get(key, (key, key))
    return {"service_code": key, "service_name": name, "description": description, "metadata": False,
            "type": "realtime", "keywords": "giải trình, accountability, Nghị định 59/2019", "group": "Giải trình"}


def open311_services() -> list[dict]:
    with db.read_only() as session:
        keys = session.execute(select(Definition.key).where(Definition.status.in_(("deployed", "retired")))
                               .distinct().order_by(Definition.key)).scalars().all()
    return [_service(k) for k in keys]


def _open311_request(session, request: Request, key: str) -> dict:
    text = request.published_text or {}
    name, _ = SERVICE_NAMES.get(key, (key, key))
    out = {
        "service_request_id": request.code,
        "status": "closed" if request.closed or request.explained_at else "open",
        "status_notes": text.get("content", ""),
        "service_name": name, "service_code": key,
        "description": text.get("subject", ""),
        "agency_responsible": _common.unit_name(session, request.unit_code),
        "service_notice": text.get("legal_basis", ""),
        "requested_datetime": iso(request.received_at),
        "updated_datetime": iso(request.published_at or request.last_activity_at),
        "expected_datetime": iso(request.explain_due_at),
    }
    return {k: v for k, v in out.items() if v is not None}


def _instant(name: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(str(value)[:40].replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=cal.LOCAL_TZ)
        if not 1900 <= moment.astimezone(cal.LOCAL_TZ).year <= 2200:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValidationFailed(f"{name} không hợp lệ", {name: "W3C date-time, e.g. 2026-11-01T00:00:00+07:00"}) from None
    return moment


def _published(session):
    return (select(Request, Definition.key).join(Definition, Definition.id == Request.definition_id)
            .where(Request.published_at.is_not(None)))


OPEN311_MAX = 1000
OPEN311_DEFAULT_DAYS = 90


def open311_requests(service_request_id: str | None = None, service_code: str | None = None,
                     start_date: str | None = None, end_date: str | None = None, status: str | None = None,
                     page: int = 1, page_size: int = OPEN311_MAX) -> list[dict]:
    """Published cases as GeoReport v2 service requests; newest first.

    As the specification says, ``service_request_id`` (a comma-separated list) overrides every
    other filter, and without dates the answer covers the last 90 days.
    """
    with db.read_only() as session:
        query = _published(session)
        if service_request_id:
            codes = [c.strip() for c in service_request_id.split(",") if c.strip()]
            if not codes or len(codes) > 100 or any(len(c) > 32 for c in codes):
                raise ValidationFailed("service_request_id không hợp lệ", {"service_request_id": "1..100 codes"})
            query = query.where(Request.code.in_(codes))
        else:
            start, end = _instant("start_date", start_date), _instant("end_date", end_date)
            if start is None and end is None:
                start = clock.now() - timedelta(days=OPEN311_DEFAULT_DAYS)
            if start is not None and end is not None and end < start:
                raise ValidationFailed("end_date trước start_date", {"end_date": "must not be before start_date"})
            if start is not None:
                query = query.where(Request.received_at >= start)
            if end is not None:
                query = query.where(Request.received_at <= end)
            if service_code:
                query = query.where(Definition.key.in_([c.strip() for c in service_code.split(",")][:20]))
            if status:
                wanted = {s.strip() for s in status.split(",") if s.strip()}
                if not wanted or wanted - {"open", "closed"}:
                    raise ValidationFailed("status không hợp lệ", {"status": "open, closed"})
                if wanted == {"open"}:
                    query = query.where(Request.closed.is_(False), Request.explained_at.is_(None))
                elif wanted == {"closed"}:
                    query = query.where((Request.closed.is_(True)) | Request.explained_at.is_not(None))
        rows = session.execute(query.order_by(Request.received_at.desc(), Request.id.desc())
                               .offset((page - 1) * page_size).limit(page_size)).all()
        return [_open311_request(session, r, key) for r, key in rows]


def open311_request(code: str) -> list[dict]:
    with db.read_only() as session:
        row = session.execute(_published(session).where(Request.code == code)).first()
        if row is None:
            raise NotFound(f"không có kết quả công khai {code[:32]} (unknown or unpublished request)")
        return [_open311_request(session, row[0], row[1])]
