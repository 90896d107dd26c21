"""What each event tells whom: the citizen's notices by email, officials' notices in the app and by email.

Every function here runs inside the caller's transaction (the use case that caused the event)
and only *adds rows*: an ``outbox_messages`` row per email, a ``notifications`` row per
in-app notice. Nothing is sent here, so the action commits with its messages or rolls back
without them (the transactional outbox); :mod:`engine.mail` delivers them afterwards.

The citizen's tracking token exists in plain text only during submission. The
acknowledgement's link is therefore written then, into the message's ``secret`` column (the
stored body has a placeholder); the delivery erases it once the mail server has accepted the
message. Later notices point to the lookup page, where the code and token are typed.

Texts are Vietnamese first, English below. Subjects carry the case code and the kind of
notice, never personal data.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable
from urllib.parse import quote

from sqlalchemy import bindparam, event, or_, select
from sqlalchemy.orm import Session

from . import calendar as cal
from . import clock, entityreads, mail, plainsql, rowwrites
from . import units as unit_tree
from .errors import NotFound, ValidationFailed
from .models import Membership, Notification, OutboxMessage, Request, User

ERASED = "[đã xóa]"
_QUEUED = "giaitrinh_queued_mail"  # [(message, the savepoint it was queued in or None)]
_PENDING = "giaitrinh_pending_attachments"

# action (audit event) -> notice kind sent to the requester
CITIZEN_NOTICES = {
    "accepted": "accepted",
    "refused": "refused",
    "redirected": "redirected",
    "info_requested": "info_requested",
    "extended": "extended",
    "suspended": "suspended",
    "resumed": "resumed",
    "withdrawn": "terminated",
    "terminated": "terminated",
    "explained": "explained",
}

TITLES = {  # (Vietnamese, English)
    "acknowledgement": ("Xác nhận đã nhận yêu cầu giải trình", "Acknowledgement of your request for explanation"),
    "accepted": ("Thông báo thụ lý giải trình", "Notice of acceptance for explanation"),
    "refused": ("Thông báo từ chối giải trình", "Notice of refusal"),
    "redirected": ("Hướng dẫn gửi yêu cầu đến cơ quan có thẩm quyền", "Guidance to the competent body"),
    "info_requested": ("Đề nghị bổ sung thông tin", "Request for more information"),
    "extended": ("Thông báo gia hạn giải trình", "Notice of extension"),
    "suspended": ("Thông báo tạm đình chỉ giải trình", "Notice of suspension"),
    "resumed": ("Thông báo tiếp tục giải trình", "Notice of resumption"),
    "terminated": ("Thông báo đình chỉ giải trình", "Notice of termination"),
    "explained": ("Văn bản giải trình", "Explanation"),
    "assigned": ("Được phân công giải trình", "You are assigned a case"),
    "urged": ("Đôn đốc giải trình", "Reminder to act on a case"),
    "escalated": ("Hồ sơ quá hạn", "Case overdue"),
}

ESCALATION_ROLES = ("head", "supervisor")


# -- small helpers --------------------------------------------------------------------------


def _day(value: str | datetime | None) -> str:
    if not value:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return cal.local_date(moment).strftime("%d/%m/%Y")


def _moment(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(cal.LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def _safe(text: str | None) -> str:
    """User-supplied text in a body: the link placeholder can only ever be ours."""
    return (text or "").replace(mail.LINK_PLACEHOLDER, "")


def _unit_name(session: Session, code: str) -> str:
    from .services import _common  # services import this module: import at call time

    return _common.unit_name(session, code)


def tracking_link(code: str, token: str) -> str:
    return f"{mail.config().public_url}/yeu-cau/{quote(code)}?token={quote(token)}"


def lookup_link() -> str:
    return f"{mail.config().public_url}/tra-cuu"


def case_link(code: str) -> str:
    return f"{mail.config().public_url}/giam-sat/ho-so/{quote(code)}"


def queued_in(session: Session) -> list[OutboxMessage]:
    """The messages this transaction queued so far (e.g. to attach a document to one)."""
    return [message for message, _savepoint in session.info.get(_QUEUED, ())]


def attach(session: Session, request_id: int, kind: str, reference: dict) -> OutboxMessage | None:
    """Attach a document to the notice of this kind for the request, in this transaction.

    Order does not matter: if the notice is already queued, the reference is added to it
    (and the message returned); if not yet, it waits in the session and the notice takes it
    when it is queued (None is returned). A reference whose notice is never queued (the
    requester gave no email address) is simply dropped with the transaction. ``reference``
    is resolved when sending, by a resolver registered with
    :func:`engine.mail.register_attachment_resolver`.
    """
    for message in reversed(queued_in(session)):
        if message.request_id == request_id and message.kind == kind:
            message.attachments = [*(message.attachments or []), dict(reference)]
            return message
    session.info.setdefault(_PENDING, {}).setdefault((request_id, kind), []).append(dict(reference))
    return None


def queue_email(session: Session, *, to: str, kind: str, subject: str, body: str,
                request: Request | None = None, unit_code: str | None = None, user: str | None = None,
                secret: str | None = None, attachments: Iterable[dict] = ()) -> OutboxMessage:
    """One row in the caller's transaction; the scheduler sends it after the commit."""
    now = clock.now()
    if request is not None:
        attachments = [*attachments, *session.info.get(_PENDING, {}).pop((request.id, kind), [])]
    message = entityreads.new(
        OutboxMessage, request_id=request.id if request is not None else None,
        unit_code=unit_code or (request.unit_code if request is not None else None),
        kind=kind, recipient=to.strip(), recipient_user=user, subject=subject[:500], body=body,
        secret=secret, attachments=[dict(a) for a in attachments], status=mail.QUEUED, due_at=now,
        attempts=0, created_at=now,
    )
    # Not added to the session: nothing reads a message in the transaction that queues it, so
    # the transaction's messages go out in one INSERT as it commits (_insert_queued), without
    # the unit of work's bookkeeping for each (4% of a lifecycle). Until then a document can
    # still be attached to one (``attach``).
    session.info.setdefault(_QUEUED, []).append((message, session.get_nested_transaction()))
    return message


_QUEUED_COLUMNS = ("request_id", "unit_code", "kind", "recipient", "recipient_user", "subject", "body", "secret",
                   "attachments", "status", "due_at", "attempts", "created_at")


@event.listens_for(Session, "before_commit")
def _insert_queued(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its messages wait for the commit
        return
    queued = session.info.pop(_QUEUED, None)
    if queued:
        rowwrites.insert_rows(session, OutboxMessage.__table__,
                              [{name: getattr(message, name) for name in _QUEUED_COLUMNS} for message, _ in queued])


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, rolled_back) -> None:
    """A rolled-back transaction's messages are not sent; a savepoint's (a failed firing in a
    scheduler's batch) leave the others of its transaction queued."""
    queued = session.info.get(_QUEUED)
    if not queued:
        return
    if not rolled_back.nested:
        session.info.pop(_QUEUED, None)
        return
    session.info[_QUEUED] = [(message, savepoint) for message, savepoint in queued
                             if not _within(savepoint, rolled_back)]


def _within(savepoint, transaction) -> bool:
    while savepoint is not None:
        if savepoint is transaction:
            return True
        savepoint = savepoint.parent
    return False


def _subject(kind: str, code: str | None) -> str:
    vi, en = TITLES[kind]
    return f"[{code}] {vi} / {en}" if code else f"{vi} / {en}"


FOOTER = ("Thư này do hệ thống GiảiTrình gửi tự động; vui lòng không trả lời thư này.\n"
          "This message was sent automatically by GiảiTrình; please do not reply to it.")


# -- the citizen ----------------------------------------------------------------------------


def _citizen_body(session: Session, request: Request, kind: str, vi: list[str], en: list[str],
                  link: str) -> str:
    unit = _unit_name(session, request.unit_code)
    title_vi, title_en = TITLES[kind]
    lines = [
        f"Kính gửi: {_safe(request.requester_name)}",
        "",
        f"{unit} — {title_vi.upper()}",
        f"Mã hồ sơ: {request.code}",
        f"Nội dung yêu cầu: {_safe(request.subject)}",
        "",
        *vi,
        "",
        f"Theo dõi hồ sơ: {link}",
        "",
        f"{unit}",
        "",
        "— English —",
        f"Dear {_safe(request.requester_name)},",
        "",
        f"{unit}: {title_en}",
        f"Case: {request.code}",
        f"Request: {_safe(request.subject)}",
        "",
        *en,
        "",
        f"Follow your case: {link}",
        "",
        FOOTER,
    ]
    return "\n".join(lines) + "\n"


def _explanation_lines(request: Request) -> tuple[list[str], list[str]]:
    explanation = request.explanation or {}
    vi = [f"Ngày ban hành: {_day(explanation.get('issued_at'))}",
          f"Người yêu cầu: {_safe(request.requester_name)}, địa chỉ: {_safe(request.requester_address)}",
          "",
          "1. Căn cứ pháp lý:",
          _safe(explanation.get("legal_basis")) or "—",
          "",
          "2. Nội dung giải trình:",
          _safe(explanation.get("content")) or "—"]
    minutes = [m for m in explanation.get("minutes") or [] if m.get("minutes")]
    if minutes:
        vi += ["", "3. Kết quả làm việc trực tiếp:"]
        vi += [f"- {_day(m.get('at'))}: {_safe(m.get('minutes'))}" for m in minutes]
    en = ["The explanation issued on your request is above, in Vietnamese (legal basis, explanation"
          + (", minutes of the working session" if minutes else "") + ").",
          "You may rate how satisfied you are on the tracking page."]
    vi += ["", "Ông/Bà có thể đánh giá mức độ hài lòng tại trang theo dõi hồ sơ."]
    return vi, en


def _citizen_lines(request: Request, kind: str, note: str | None) -> tuple[list[str], list[str]]:
    deadlines = request.deadlines or {}
    note = _safe(note)
    if kind == "accepted":
        vi = ["Yêu cầu giải trình của Ông/Bà đủ điều kiện và đã được thụ lý.",
              f"Thời hạn giải trình: đến hết ngày {_day(deadlines.get('explain_by'))}."]
        en = ["Your request meets the conditions and has been accepted for explanation.",
              f"The explanation is due by the end of {_day(deadlines.get('explain_by'))}."]
        if note:
            vi.append(f"Ghi chú: {note}")
            en.append(f"Note: {note}")
        return vi, en
    if kind == "refused":
        return ([f"Cơ quan từ chối tiếp nhận yêu cầu giải trình. Lý do: {note or '—'}."],
                [f"The request was refused. Ground (in Vietnamese): {note or '—'}."])
    if kind == "redirected":
        return (["Nội dung yêu cầu không thuộc thẩm quyền của cơ quan.", note or ""],
                ["The request is not within this body's competence; the guidance above names the competent body."])
    if kind == "info_requested":
        return ([f"Đề nghị Ông/Bà bổ sung thông tin: {note or '—'}",
                 "Ông/Bà bổ sung thông tin tại trang theo dõi hồ sơ (dùng mã hồ sơ và mã tra cứu đã được cấp)."],
                ["Please provide the information asked above on the tracking page (with your case code and token)."])
    if kind == "extended":
        return ([f"Thời hạn giải trình được gia hạn. {note}".strip(),
                 f"Thời hạn mới: đến hết ngày {_day(deadlines.get('explain_by'))}."],
                ["The time to explain has been extended (reason above).",
                 f"New deadline: end of {_day(deadlines.get('explain_by'))}."])
    if kind == "suspended":
        return ([f"Việc giải trình tạm đình chỉ. Căn cứ: {note or '—'}.",
                 "Thời gian tạm đình chỉ không tính vào thời hạn giải trình."],
                ["The explanation is suspended (ground above); the time it stands still does not count."])
    if kind == "resumed":
        due = deadlines.get("explain_by") or deadlines.get("acknowledge_by")
        return ([f"Việc giải trình được tiếp tục. {note}".strip(), f"Thời hạn: đến hết ngày {_day(due)}."],
                ["The explanation resumes.", f"Deadline: end of {_day(due)}."])
    if kind == "terminated":
        vi = ["Việc giải trình đã đình chỉ do Ông/Bà rút yêu cầu."]
        if note:
            vi.append(f"Lý do: {note}")
        return vi, ["The explanation was terminated because you withdrew the request."]
    if kind == "explained":
        return _explanation_lines(request)
    raise ValueError(kind)


def acknowledge(session: Session, request: Request, token: str) -> OutboxMessage | None:
    """The acknowledgement, queued in the submission's transaction, the only time the token is known."""
    if not request.requester_email:
        return None
    link = tracking_link(request.code, token)
    deadlines = request.deadlines or {}
    vi = [f"Cơ quan đã nhận yêu cầu giải trình của Ông/Bà lúc {_moment(request.received_at)}.",
          f"Cơ quan sẽ thông báo bằng văn bản việc thụ lý hoặc từ chối đến hết ngày "
          f"{_day(deadlines.get('acknowledge_by'))}.",
          "Đường liên kết dưới đây chứa mã tra cứu bí mật của hồ sơ: xin đừng chia sẻ."]
    en = [f"Your request for explanation was received at {_moment(request.received_at)}.",
          f"You will be told in writing whether it is accepted by the end of {_day(deadlines.get('acknowledge_by'))}.",
          "The link below holds your case's secret token: do not share it."]
    body = _citizen_body(session, request, "acknowledgement", vi, en, mail.LINK_PLACEHOLDER)
    return queue_email(session, to=request.requester_email, kind="acknowledgement",
                       subject=_subject("acknowledgement", request.code), body=body, request=request, secret=link)


def case_event(session: Session, request: Request, action: str, note: str | None = None,
               by: str | None = None) -> None:
    """Whatever an event of the case means for the requester and the officials (cheap when nothing)."""
    kind = CITIZEN_NOTICES.get(action)
    if kind is not None and request.requester_email:
        vi, en = _citizen_lines(request, kind, note)
        body = _citizen_body(session, request, kind, [line for line in vi if line is not None], en, lookup_link())
        queue_email(session, to=request.requester_email, kind=kind, subject=_subject(kind, request.code),
                    body=body, request=request)
    if action == "assigned" and request.assignee:
        deadline = _day((request.deadlines or {}).get("explain_by"))
        notify_official(session, request, request.assignee, "assigned",
                        f"Hồ sơ {request.code}: {_safe(request.subject)}",
                        f"Hạn giải trình: {deadline}." + (f" Người phân công: {by}." if by else ""),
                        f"Deadline: {deadline}." + (f" Assigned by {by}." if by else ""))


# -- officials --------------------------------------------------------------------------------


# Read on the connection: no autoflush (the use case's changes go out in its one flush) and
# none of the ORM's handling of a statement, which cost more than running it.
_USER_EMAIL = select(User.is_active, User.email).where(User.username == bindparam("username"))


def _user_email(session: Session, username: str) -> tuple[bool, str | None] | None:
    rows = plainsql.rows(session, _USER_EMAIL, {"username": username})
    return None if not rows else (bool(rows[0][0]), rows[0][1])


def _notice(request: Request, username: str, kind: str, title: str, body_vi: str, body_en: str) -> dict:
    return dict(username=username, unit_code=request.unit_code, request_id=request.id, request_code=request.code,
                kind=kind, title=title[:500], body=body_vi + (f"\n{body_en}" if body_en else ""),
                created_at=clock.now(), read_at=None)


def _official_email(session: Session, request: Request, username: str, kind: str, title: str,
                    body_vi: str, body_en: str, email: str) -> None:
    vi, en = TITLES[kind]
    text = "\n".join([
        f"{vi}: {title}", "", body_vi, "", f"Xem hồ sơ: {case_link(request.code)}", "",
        "— English —", f"{en}: {request.code}", "", body_en, "", f"Open the case: {case_link(request.code)}",
        "", FOOTER]) + "\n"
    queue_email(session, to=email, kind=kind, subject=_subject(kind, request.code), body=text,
                request=request, user=username)


def notify_official(session: Session, request: Request, username: str, kind: str, title: str,
                    body_vi: str, body_en: str = "", email: str | None | bool = True) -> Notification | None:
    """An in-app notice to one official, and the same by email when the account has an address."""
    if email is True:
        found = _user_email(session, username)
        if found is None or not found[0]:
            return None
        email = found[1]
    notice = entityreads.new(Notification, **_notice(request, username, kind, title, body_vi, body_en))
    entityreads.add(session, notice)
    if email:
        _official_email(session, request, username, kind, title, body_vi, body_en, email)
    return notice


# Escalation notices go out many at a time (the heads and supervisors of a unit, for each case
# a scheduler's batch escalates) and nothing reads them back in the transaction: one plain
# INSERT for all of them, not a unit-of-work insert each (on SQLite the ORM cannot batch
# inserts whose ids it must read back).
_RECIPIENTS = "giaitrinh_escalation_recipients"


def _escalation_recipients(session: Session, unit_code: str) -> list[tuple[str, str | None]]:
    """(username, email) of the unit's heads, and of the supervisors of the unit, of a unit above
    it (who see its cases) or of every unit; active accounts only, in username order.

    Read once per transaction and unit: a scheduler's batch raises many escalations in one
    transaction, and nothing that raises one changes accounts or memberships.
    """
    cached = session.info.setdefault(_RECIPIENTS, {})
    if unit_code not in cached:
        cached[unit_code] = _read_escalation_recipients(session, unit_code)
    return cached[unit_code]


def prefetch_escalation_recipients(session: Session, unit_codes) -> None:
    """Read the recipients of these units' escalations in one statement, for this transaction."""
    cached = session.info.setdefault(_RECIPIENTS, {})
    wanted = set(unit_codes) - set(cached)
    if wanted:
        cached.update(_read_recipients(session, wanted))


def _read_escalation_recipients(session: Session, unit_code: str) -> list[tuple[str, str | None]]:
    return _read_recipients(session, [unit_code])[unit_code]


# The heads and supervisors of some units or of every unit, with active accounts: memberships
# first, their accounts by id. Ordered by username instead, SQLite walks every account in that
# order and looks up its memberships (2 ms at 800 accounts). Built once: building this statement
# costs more than running it.
_ROSTER_QUERY = (
    select(User.username, User.email, Membership.role, Membership.unit_code)
    .select_from(Membership).join(User, User.id == Membership.user_id)
    .where(Membership.role.in_(ESCALATION_ROLES), User.is_active.is_(True), or_(
        Membership.unit_code.in_(bindparam("units", expanding=True)), Membership.unit_code.is_(None)))
)


def _read_recipients(session: Session, unit_codes) -> dict[str, list[tuple[str, str | None]]]:
    """Each unit's escalation recipients (``_escalation_recipients``), read now in one statement."""
    chains = {code: unit_tree.ancestors_cached(session, code) for code in unit_codes}
    with session.no_autoflush:
        rows = session.execute(_ROSTER_QUERY, {"units": sorted({u for chain in chains.values() for u in chain})}).all()
    rows.sort(key=lambda row: row[0])
    found = {}
    for code, chain in chains.items():
        above = set(chain)
        seen: set[str] = set()
        recipients = []
        for username, email, role, unit in rows:
            if (unit is None or (role == "head" and unit == code) or (role == "supervisor" and unit in above)) \
                    and username not in seen:  # a person with several such memberships is told once
                seen.add(username)
                recipients.append((username, email))
        found[code] = recipients
    return found


def escalated(session: Session, request: Request, step: str, level: int, due_at: datetime | None) -> None:
    """A missed deadline: the head of the unit and its supervisors are told the same day (PRODUCT.md)."""
    title = f"Hồ sơ {request.code} quá hạn bước {step} (lần {level})"
    vi = f"Hạn: {_moment(due_at)}. Người giải trình: {request.assignee or '—'}. Nội dung: {_safe(request.subject)}"
    en = f"Step {step} is overdue (level {level}); it was due {_moment(due_at)}."
    recipients = _escalation_recipients(session, request.unit_code)
    if not recipients:
        return
    rowwrites.insert_rows(session, Notification.__table__, [_notice(request, username, "escalated", title, vi, en)
                                                            for username, _email in recipients])
    for username, email in recipients:
        if email:
            _official_email(session, request, username, "escalated", title, vi, en, email)


def _may_work_on(session: Session, username: str, unit_code: str) -> bool:
    """The account is active and holds some role in the unit, a unit above it, or every unit."""
    ancestors = unit_tree.ancestors(session, unit_code)
    with session.no_autoflush:
        found = session.execute(
            select(Membership.id).join(User, User.id == Membership.user_id)
            .where(User.username == username, User.is_active.is_(True),
                   or_(Membership.unit_code.in_(ancestors), Membership.unit_code.is_(None))).limit(1)
        ).first()
    return found is not None


def notify_urge(session: Session, request: Request, to_username: str, note: str | None, by: str) -> Notification:
    """Urging (đôn đốc): an in-app notice and an email to one official of the case's unit.

    For ``supervision.urge``, which checks who may urge; this checks only that the
    person urged works on the unit's cases, so no notice about a case leaks to another unit.
    """
    if not isinstance(to_username, str) or not _may_work_on(session, to_username, request.unit_code):
        raise ValidationFailed("người được đôn đốc không thuộc đơn vị của hồ sơ (not an official of this unit)",
                               {"to": "Chọn cán bộ của đơn vị xử lý hồ sơ (an official of the case's unit)."})
    note = _safe(note).strip()
    notice = notify_official(
        session, request, to_username, "urged", f"Hồ sơ {request.code}: {_safe(request.subject)}",
        f"{by} đôn đốc: {note or 'đề nghị khẩn trương giải trình đúng hạn.'} "
        f"Hạn: {_moment(request.deadline_at)}.",
        f"{by} urges you to act on this case{': ' + note if note else ''}. Deadline: {_moment(request.deadline_at)}.")
    if notice is None:
        raise NotFound("không có tài khoản này (unknown account)")
    return notice


def notify_handed_over(session: Session, request: Request, to_username: str, task_title: str, note: str,
                       by: str) -> Notification | None:
    """A supervisor gave an open task to an official (reassignment, or one more candidate)."""
    deadline = _moment(request.deadline_at)
    return notify_official(
        session, request, to_username, "assigned", f"Hồ sơ {request.code}: {_safe(request.subject)}",
        f"{by} giao cho bạn bước «{_safe(task_title)}»: {_safe(note)} Hạn: {deadline}.",
        f"{by} handed you the step '{_safe(task_title)}': {_safe(note)} Deadline: {deadline}.")


# -- retention ----------------------------------------------------------------------------------


def purge_for_request(session: Session, request_id: int) -> int:
    """Retention: the case's messages keep that they were sent, not what they said or to whom."""
    rows = session.execute(select(OutboxMessage).where(OutboxMessage.request_id == request_id)).scalars().all()
    for row in rows:
        row.body = ERASED
        row.secret = None
        row.recipient = ERASED
        if row.status == mail.QUEUED:
            row.status = mail.FAILED
            row.last_error = "erased by retention before it was sent"
    return len(rows)
