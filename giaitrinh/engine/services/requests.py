"""Citizens' use cases: submit, follow, add information, withdraw, rate; and the public register."""
from __future__ import annotations

import hmac
import secrets
from typing import Any

from sqlalchemy import and_, func, not_, select
from sqlalchemy import text as sql_text

from .. import audit, calendar as cal, clock, db, entityreads, forms, notifications, plainsql, projection
from .. import redaction, runtime
from .. import units as unit_tree
from ..accounts import Actor, hash_secret
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..models import SEARCH_TABLE, AuditEvent, Request, Unit, WorkflowState
from . import _common, documents
from . import attachments as attachments_service
from ._common import iso

REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "requester": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 255},
                "address": {"type": "string", "minLength": 3, "maxLength": 500},
                "phone": {"type": "string", "pattern": r"^\+?[0-9 .()-]{8,20}$"},
                "email": {"type": "string", "maxLength": 255, "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"},
                "kind": {"type": "string", "enum": ["person", "organisation"]},
            },
            "required": ["name", "address", "phone"],
            "additionalProperties": False,
        },
        "subject": {"type": "string", "minLength": 3, "maxLength": 500},
        "content": {"type": "string", "minLength": 10, "maxLength": 20000},
        "unit": {"type": "string", "minLength": 1, "maxLength": 32},
        "channel": {"type": "string", "enum": ["online", "in_person", "post"]},
    },
    "required": ["requester", "subject", "content"],
    "additionalProperties": False,
}

PUBLIC_EVENTS = {
    "submitted": "Đã tiếp nhận yêu cầu",
    "info_requested": "Đề nghị bổ sung thông tin",
    "info_provided": "Người yêu cầu đã bổ sung thông tin",
    "accepted": "Thông báo thụ lý giải trình",
    "refused": "Thông báo từ chối giải trình",
    "redirected": "Hướng dẫn đến cơ quan có thẩm quyền",
    "assigned": "Đã phân công người giải trình",
    "dialogue": "Làm việc trực tiếp",
    "extended": "Gia hạn giải trình",
    "explained": "Đã ban hành văn bản giải trình",
    "published": "Đã công khai kết quả giải trình",
    "suspended": "Tạm đình chỉ giải trình",
    "resumed": "Tiếp tục giải trình",
    "withdrawn": "Người yêu cầu rút yêu cầu",
    "rated": "Người yêu cầu đánh giá mức độ hài lòng",
    "escalated": "Quá hạn: đã báo cáo lãnh đạo",
    "terminated": "Đình chỉ giải trình",
}


def _clean(text: str) -> str:
    return " ".join(text.split()) if text else text


def receiving_units() -> list[tuple[str, str]]:
    """(code, name) of the units a citizen may address a request to."""
    with db.read_only() as session:
        return [(u.code, u.name) for u in session.execute(select(Unit).order_by(Unit.code)).scalars()]


def _next_code(session, year: int) -> str:
    return f"GT-{year}-{_common.next_in_register(session, f'request:{year}'):06d}"


def submit(payload: Any, actor: Actor | None = None, attachments: list | None = None) -> dict:
    """A new request: its code, its secret token (shown once) and the acknowledgement deadline.

    ``attachments``: evidence already checked by ``services.attachments.check_all``."""
    payload = forms.normalize(payload)
    fields = forms.validate(REQUEST_SCHEMA, payload)
    if fields:
        raise ValidationFailed("yêu cầu chưa hợp lệ (invalid request)", fields)
    requester = payload["requester"]
    for path, value in (("requester.name", requester["name"]), ("subject", payload["subject"]),
                        ("content", payload["content"]), ("requester.address", requester["address"])):
        if "\x00" in value or not value.strip():
            raise ValidationFailed("yêu cầu chưa hợp lệ (invalid request)", {path: "Nội dung không hợp lệ (empty or contains a null byte)."})
    channel = payload.get("channel", "online")
    if channel != "online" and (actor is None or not actor.has_role("reception")):
        raise Forbidden("chỉ cán bộ tiếp nhận được ghi nhận yêu cầu trực tiếp hoặc qua bưu chính", {"channel": "online only for citizens"})
    token = secrets.token_urlsafe(24)
    now = clock.now()
    with db.transaction() as session:
        unit_code = payload.get("unit")
        if unit_code:
            if not isinstance(unit_code, str) or not unit_tree.exists(session, unit_code):
                raise ValidationFailed("đơn vị không tồn tại (unknown unit)", {"unit": f"Không có đơn vị {unit_code}."})
        else:
            first = session.execute(select(Unit).where(Unit.parent_code.is_(None)).order_by(Unit.code).limit(1)).scalar_one_or_none()
            if first is None:
                raise NotFound("chưa có đơn vị nào tiếp nhận yêu cầu (no unit configured)")
            unit_code = first.code
        definition = _common.deployed_version(session)
        code = _next_code(session, cal.local_date(now).year)
        request = entityreads.new(
            Request, code=code, token_hash=hash_secret(token), definition_id=definition.id, unit_code=unit_code,
            status="received", subject=_clean(payload["subject"].strip()), content=payload["content"].strip(),
            channel=channel, requester_kind=requester.get("kind", "person"), requester_name=_clean(requester["name"]),
            requester_address=requester["address"].strip(), requester_phone=requester["phone"].strip(),
            requester_email=(requester.get("email") or None), received_at=now, last_activity_at=now, deadlines={},
        )
        entityreads.add(session, request)
        if db.is_sqlite():
            # The id SQLite gives a row (one more than the largest), known under BEGIN IMMEDIATE's
            # write lock: the request is then inserted once, its tasks, facts and state settled,
            # instead of inserted bare and updated at once through its twenty indexes.
            request.id = plainsql.rows(session, _NEXT_REQUEST_ID, {})[0][0]
        else:
            session.flush()  # the id from the table's sequence
        data = {"periods": definition.manifest["periods"], "deadlines": {}, "extensions_used": 0,
                "request": {"code": code, "unit": unit_code}}
        running = runtime.start(definition, data, cal.load_calendar(session))
        projection.sync(session, request, running, new=True)
        text = runtime.dump(running)
        state = entityreads.new(WorkflowState, request_id=request.id, definition_id=definition.id, state=text)
        entityreads.add(session, state)
        session.flush()  # the case's rows before the audit event and attachments that name it
        _common.remember_saved(session, request.id, state, text, running)
        audit.record(session, "submitted", actor=actor.username if actor else "citizen", request_id=request.id,
                     after={"status": request.status, "deadlines": request.deadlines, "channel": channel})
        if attachments:
            attachments_service.record(session, request, attachments, "evidence",
                                       actor.username if actor else "citizen")
        notifications.acknowledge(session, request, token)  # the one moment the plain token is known
        result = {"code": code, "token": token, "status": request.status, "received_at": iso(now),
                  "deadlines": dict(request.deadlines)}
    from .. import timers
    timers.wake()
    return result


_NEXT_REQUEST_ID = select(func.coalesce(func.max(Request.id), 0) + 1)


def _authorize(session, code: str, token: str | None, actor: Actor | None) -> Request:
    request = session.execute(select(Request).where(Request.code == code)).scalar_one_or_none()
    if actor is not None and actor.handles_cases:
        if request is None:
            raise NotFound(f"không có yêu cầu {code} (unknown request)")
        if not actor.handles_cases_of(request.unit_code):
            raise Forbidden("yêu cầu thuộc đơn vị khác (another unit's request)")
        return request
    if not token:
        raise NotFound(f"không có yêu cầu {code} hoặc mã tra cứu không đúng (unknown request or wrong token)")
    # Unknown code and wrong token look the same: the code alone reveals nothing.
    expected = request.token_hash if request else hash_secret("x")
    if request is None or not hmac.compare_digest(expected, hash_secret(token)):
        raise NotFound(f"không có yêu cầu {code} hoặc mã tra cứu không đúng (unknown request or wrong token)")
    return request


def timeline(session, request: Request) -> list[dict]:
    events = session.execute(
        select(AuditEvent).where(AuditEvent.request_id == request.id, AuditEvent.public.is_(True)).order_by(AuditEvent.id)
    ).scalars()
    out = []
    for e in events:
        item = {"at": iso(e.at), "event": e.action, "label": PUBLIC_EVENTS.get(e.action, e.action)}
        if e.note:
            item["note"] = e.note
        out.append(item)
    return out


def view(code: str, token: str | None = None, actor: Actor | None = None) -> dict:
    """What the requester (or an official of the unit) sees of one request."""
    # Whoever comes in as an official is recorded looking, whatever token they also send.
    official = actor is not None and actor.handles_cases
    with (db.transaction() if official else db.read_only()) as session:
        request = _authorize(session, code, token, actor)
        result = public_summary(session, request)
        result["timeline"] = timeline(session, request)
        result["content"] = request.content
        if official:
            _common.record_personal_data_view(session, request, actor, "case")
        if official or token:
            result["requester"] = {"name": request.requester_name, "address": request.requester_address,
                                   "phone": request.requester_phone, "email": request.requester_email,
                                   "kind": request.requester_kind}
        if request.explanation and request.status in ("explained", "published") or (request.explanation and request.closed):
            result["explanation"] = request.explanation
        if request.outcome:
            result["outcome"] = request.outcome
        if request.rating_score:
            result["rating"] = {"score": request.rating_score, "comment": request.rating_comment, "at": iso(request.rated_at)}
        return result


def public_summary(session, request: Request) -> dict:
    calendar = cal.load_calendar(session)
    return {
        "code": request.code,
        "status": request.status,
        "subject": request.subject,
        "unit": request.unit_code,
        "unit_name": _common.unit_name(session, request.unit_code),
        "received_at": iso(request.received_at),
        "deadlines": dict(request.deadlines or {}),
        "deadline_at": iso(request.deadline_at),
        "working_days_left": projection.working_days_left(calendar, request.deadline_at),
        "overdue": bool(request.overdue),
        "extended": bool(request.extended),
        "suspended": request.suspended_at is not None,
        "closed": bool(request.closed),
        "current_step": request.current_step,
    }


def withdraw(code: str, token: str | None, reason: str | None = None, actor: Actor | None = None) -> dict:
    """The requester withdraws the whole request (art. 14): the case terminates."""
    if reason is not None and (not isinstance(reason, str) or len(reason) > 5000):
        raise ValidationFailed("lý do không hợp lệ", {"reason": "Tối đa 5000 ký tự (string, at most 5000 characters)."})
    reason = forms.normalize(reason)
    if forms.control_characters(reason):
        raise ValidationFailed("lý do không hợp lệ", forms.control_characters(reason, "reason"))
    with db.transaction() as session:
        _authorize(session, code, token, actor)
        request = _common.request_for_update(session, code)
        if request.closed or request.status in ("explained", "published", "terminated"):
            raise Conflict(f"yêu cầu đang ở trạng thái {request.status}, không thể rút (cannot withdraw now)")
        running, state = _common.load_running(session, request)
        before = request.status
        runtime.cancel(running)
        _common.save_running(session, request, running, state)
        request.status = "terminated"
        request.closed = True
        request.closed_at = clock.now()
        request.deadline_at = None
        request.overdue = False
        request.current_step = None
        request.outcome = {"decision": "withdrawn", "note": reason} if reason else {"decision": "withdrawn"}
        audit.record(session, "withdrawn", actor=actor.username if actor else "citizen", request_id=request.id,
                     note=reason, before={"status": before}, after={"status": "terminated"})
        notifications.case_event(session, request, "withdrawn", reason)
        documents.issue_notice(session, request, "termination_notice", actor or "citizen",
                               reason="người yêu cầu rút toàn bộ yêu cầu giải trình" + (f": {reason}" if reason else ""))
        return public_summary(session, request)


def provide_info(code: str, token: str | None, content: Any, actor: Actor | None = None) -> dict:
    """The requester supplies what reception asked for; the acknowledgement clock restarts."""
    if not isinstance(content, str) or not (3 <= len(content.strip()) <= 20000):
        raise ValidationFailed("thông tin bổ sung không hợp lệ", {"content": "Từ 3 đến 20000 ký tự (3..20000 characters)."})
    content = forms.normalize(content)
    if forms.control_characters(content):
        raise ValidationFailed("thông tin bổ sung không hợp lệ", forms.control_characters(content, "content"))
    with db.transaction() as session:
        _authorize(session, code, token, actor)
        request = _common.request_for_update(session, code)
        if request.status != "needs_info":
            raise Conflict("yêu cầu không ở trạng thái chờ bổ sung (not waiting for information)")
        running, state = _common.load_running(session, request)
        stamp = cal.local_date(clock.now()).strftime("%d/%m/%Y")
        if not runtime.deliver_message(running, "info_provided", {"additional_info": content.strip()}):
            raise Conflict("yêu cầu không ở trạng thái chờ bổ sung (not waiting for information)")
        request.content = f"{request.content}\n\n[Bổ sung ngày {stamp}]\n{content.strip()}"
        _common.save_running(session, request, running, state)
        audit.record(session, "info_provided", actor=actor.username if actor else "citizen", request_id=request.id,
                     after={"status": request.status, "deadlines": request.deadlines})
        result = public_summary(session, request)
    from .. import timers
    timers.wake()
    return result


def rate(code: str, token: str | None, score: Any, comment: Any = None, actor: Actor | None = None) -> dict:
    fields = {}
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        fields["score"] = "Điểm từ 1 đến 5 (integer 1..5)."
    if comment is not None and (not isinstance(comment, str) or len(comment) > 5000):
        fields["comment"] = "Tối đa 5000 ký tự (string, at most 5000 characters)."
    else:
        comment = forms.normalize(comment)
        fields.update(forms.control_characters(comment, "comment"))
    if fields:
        raise ValidationFailed("đánh giá không hợp lệ (invalid rating)", fields)
    with db.transaction() as session:
        _authorize(session, code, token, actor)
        request = _common.request_for_update(session, code)
        if request.explained_at is None:
            raise Conflict("chỉ đánh giá được sau khi nhận văn bản giải trình (not explained yet)")
        if request.rating_score is not None:
            raise Conflict("yêu cầu đã được đánh giá (already rated)")
        request.rating_score = score
        request.rating_comment = (comment or "").strip() or None
        request.rated_at = clock.now()
        audit.record(session, "rated", actor="citizen", request_id=request.id, after={"score": score})
        return {"code": code, "score": score, "comment": request.rating_comment, "rated_at": iso(request.rated_at)}


# The search counts matches up to TOTAL_CAP: past it the answer says "more than 10,000" (``total_exact``
# false), as search pages do, instead of counting 700,000 matches of a common word one by one.
TOTAL_CAP = 10_000
_SORT_MATCHES = 2000  # at most this many matches are read and sorted; more are found in published order
# On SQLite, a word in more answers than this (1 in 70 of a city's) is not looked up in the trigram
# table: the newest answers are read in order and each is tested, and a page comes after a few hundred.
_DENSE_MATCHES = TOTAL_CAP


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Newest answers first: the order of every page of the search.
_NEWEST_FIRST = (Request.published_at.desc(), Request.id.desc())
# On PostgreSQL, a page of a word in more than _SORT_MATCHES answers is found by walking the newest
# answers this many at a time (below).
_WALK_CHUNK = 1000


def _walk_newest(session, unit: str | None, contains: list, offset: int, limit: int) -> list[int]:
    """PostgreSQL: the ids of one page of matches, newest first, for words in many answers.

    The planner guesses a handful of rows for ``LIKE '%mat%'``: it took every match from the
    trigram index and sorted them (44,000 rows read for a page of 50, 190 ms at a city's million),
    and told to keep the published order it guessed one match and read everything. So the newest
    answers are read here in published order, a chunk at a time with each one's match tested in
    the same pass, until the page is full: at one answer in 25 matching, two chunks for page 1.
    """
    base = select(Request.id, Request.published_at, and_(*contains).label("hit")).where(
        Request.published_at.is_not(None))
    if unit:
        base = base.where(Request.unit_code == unit)
    kept: list[int] = []
    last = None  # (published_at, id) of the last answer read: the next chunk starts below it
    while len(kept) < offset + limit:
        chunk = base
        if last is not None:
            chunk = chunk.where(Request.published_at <= last[0],
                                not_(and_(Request.published_at == last[0], Request.id >= last[1])))
        rows = session.execute(chunk.order_by(*_NEWEST_FIRST).limit(_WALK_CHUNK)).all()
        kept += [row.id for row in rows if row.hit]
        if len(rows) < _WALK_CHUNK:
            break
        last = (rows[-1].published_at, rows[-1].id)
    return kept[offset:offset + limit]


# On PostgreSQL, a unit with at most this many published answers has its matches counted by reading them.
_UNIT_READ = 20_000


def _unit_matches(session, unit: str, contains: list) -> int | None:
    """PostgreSQL: how many of a unit's published answers match, read from the unit's answers
    themselves when they are few enough (None otherwise).

    A word in most answers made the trigram index's bitmap cover the whole city before it was
    narrowed to the unit (700,000 entries, 110 ms, for a unit's 7,000); the test in the count's
    FILTER, not in a WHERE, keeps the planner on the unit's rows.
    """
    published = (Request.unit_code == unit, Request.published_at.is_not(None))
    if session.execute(select(func.count()).where(*published)).scalar_one() > _UNIT_READ:
        return None
    return session.execute(select(func.count().filter(and_(*contains))).where(*published)).scalar_one()


def _capped_count(session, query, cap: int) -> int:
    """How many rows ``query`` finds, counting no further than ``cap + 1``."""
    return session.execute(select(func.count()).select_from(query.order_by(None).limit(cap + 1).subquery())).scalar_one()


def search_published(q: str | None = None, unit: str | None = None, page: int = 1, per_page: int = 50,
                     with_total: bool = True) -> dict:
    """Published answers, redacted, newest first; every word of ``q`` must appear, ignoring case and diacritics.

    ``total`` is the number of matches when ``total_exact``; otherwise there are more than
    ``total`` (``TOTAL_CAP``), and pages are still read newest first without counting them all.
    ``with_total=False`` (the portal's front page, which shows the newest few) skips the count:
    ``total`` and ``total_exact`` are None.
    """
    with db.read_only() as session:
        query = select(Request).where(Request.published_at.is_not(None))
        if unit:
            query = query.where(Request.unit_code == unit)
        words = redaction.fold(q).split()[:10]
        contains = [Request.search_text.like(f"%{_escape_like(w)}%", escape="\\") for w in words]
        known = None  # the count, when the trigram table gave it already
        if words and db.is_sqlite():
            # The trigram table holds exactly the published answers: a word of 3 characters or more
            # is a phrase of trigrams (a substring match answered from the index); a shorter one,
            # which has no trigram, is compared with the table's own copy of the text. The unit is
            # not tested there (each match's unit would be read from the table's content).
            phrases = ['"' + w.replace('"', '""') + '"' for w in words if len(w) >= 3]
            found = select(SEARCH_TABLE.c.rowid)
            if phrases:
                found = found.where(sql_text("requests_search MATCH :phrases").bindparams(phrases=" AND ".join(phrases)))
            for word in (w for w in words if len(w) < 3):
                found = found.where(SEARCH_TABLE.c.search_text.like(f"%{_escape_like(word)}%", escape="\\"))
            matches = _capped_count(session, found, _DENSE_MATCHES)
            if matches <= _DENSE_MATCHES:
                # Few matches: read them and sort. More: walk the newest answers and keep the matching
                # ones (``id + 0`` keeps SQLite from driving the query from the list of matches).
                key = Request.id if matches <= _SORT_MATCHES else Request.id + 0
                query = query.where(key.in_(found))
                exactly = True
            else:
                query = query.where(*contains)
                exactly = False  # more than _DENSE_MATCHES
            # The table holds every published answer, and only those: without a unit its count is the total.
            if not unit and (exactly or _DENSE_MATCHES >= TOTAL_CAP):
                known = matches
        elif words:
            query = query.where(*contains)  # on PostgreSQL the pg_trgm GIN index answers these patterns
            if unit and with_total:
                known = _unit_matches(session, unit, contains)
        total = exact = None
        if with_total:
            counted = known if known is not None else _capped_count(session, query, TOTAL_CAP)
            total, exact = min(counted, TOTAL_CAP), counted <= TOTAL_CAP
        if exact and (page - 1) * per_page >= total:
            rows = []  # past the last match (or none at all): nothing to read
        # On PostgreSQL, many matches, or a unit's few answers (just counted by reading them): walk.
        elif words and not db.is_sqlite() and total is not None and (total > _SORT_MATCHES or (unit and known is not None)):
            ids = _walk_newest(session, unit, contains, (page - 1) * per_page, per_page)
            found_rows = {r.id: r for r in session.execute(select(Request).where(Request.id.in_(ids))).scalars()}
            rows = [found_rows[i] for i in ids]
        else:
            rows = session.execute(
                query.order_by(*_NEWEST_FIRST).offset((page - 1) * per_page).limit(per_page)
            ).scalars().all()
        items = [{
            "code": r.code,
            "subject": (r.published_text or {}).get("subject", ""),
            "unit": r.unit_code,
            "unit_name": _common.unit_name(session, r.unit_code),
            "published_at": iso(r.published_at),
            "explanation": {k: (r.published_text or {}).get(k, "") for k in ("legal_basis", "content")},
        } for r in rows]
        return {"items": items, "total": total, "total_exact": exact, "page": page, "per_page": per_page}


def published(code: str) -> dict:
    result = search_published_one(code)
    if result is None:
        raise NotFound(f"không có kết quả công khai {code}")
    return result


def search_published_one(code: str) -> dict | None:
    with db.read_only() as session:
        r = session.execute(select(Request).where(Request.code == code, Request.published_at.is_not(None))).scalar_one_or_none()
        if r is None:
            return None
        return {"code": r.code, "subject": (r.published_text or {}).get("subject", ""), "unit": r.unit_code,
                "unit_name": _common.unit_name(session, r.unit_code), "published_at": iso(r.published_at),
                "received_at": iso(r.received_at), "explained_at": iso(r.explained_at),
                "explanation": {k: (r.published_text or {}).get(k, "") for k in ("legal_basis", "content")}}
