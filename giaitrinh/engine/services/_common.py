"""Helpers shared by the use cases: loading a request with its workflow, saving it back."""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic as _monotonic
from typing import Any, Iterator

from sqlalchemy import bindparam, event, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, undefer
from sqlalchemy.orm.exc import StaleDataError

from .. import calendar as cal
from .. import audit, clock, db, notifications, plainsql, projection, redaction, runtime
from ..errors import Conflict, NotFound
from ..models import AuditEvent, Counter, Definition, Escalation, Job, RedactionRule, Request, Task, Unit, WorkflowState

DEFAULT_PROCESS = "giai_trinh"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(cal.LOCAL_TZ).isoformat(timespec="seconds")


def request_for_update(session: Session, code: str) -> Request:
    request = session.execute(
        select(Request).where(Request.code == code).with_for_update()
    ).scalar_one_or_none()
    if request is None:
        raise NotFound(f"không có yêu cầu {code} (unknown request)")
    return request


# Workflows saved in a transaction, handed to runtime's live cache once it commits.
_SAVED = "giaitrinh_saved_workflows"


def _live_key(session: Session, request_id: int):
    return (db.database_key(session.get_bind()), request_id)


_PINNED = "giaitrinh_pinned"


def pinned_get(session: Session, model, key):
    """``session.get`` that keeps the object for the rest of the session.

    The identity map holds objects weakly: a definition or unit read by one helper is
    gone by the time the next helper of the same use case asks, and is fetched again.
    """
    pinned = session.info.setdefault(_PINNED, {})
    obj = pinned.get((model, key))
    if obj is None:
        with session.no_autoflush:  # only ever used for rows no use case creates on the way
            obj = session.get(model, key)
        if obj is not None:
            pinned[(model, key)] = obj
    return obj


@dataclass(frozen=True)
class DefinitionVersion:
    """The immutable part of a ``definitions`` row: what running a request needs of it."""

    id: int
    key: str
    version: int
    sha256: str
    bpmn_xml: str
    manifest: dict[str, Any]


# Per database engine (init_db makes a new one), definition id -> its immutable content.
# A deployed version never changes (a change is a new version), so nothing invalidates it;
# its status (deployed, retired) is not part of it and is always read from the row.
_definitions: "weakref.WeakKeyDictionary[Any, dict[int, DefinitionVersion]]" = weakref.WeakKeyDictionary()
_definitions_lock = threading.Lock()


def definition(session: Session, definition_id: int) -> DefinitionVersion:
    """The definition a request is pinned to, read from the database once per process."""
    engine = db.get_engine()
    cached = _definitions.get(engine, {}).get(definition_id)
    if cached is not None:
        return cached
    with session.no_autoflush:
        row = session.get(Definition, definition_id, options=[undefer(Definition.bpmn_xml)])
    if row is None:
        raise NotFound("không có quy trình này (unknown definition)")
    cached = DefinitionVersion(row.id, row.key, row.version, row.sha256, row.bpmn_xml, row.manifest)
    with _definitions_lock:
        _definitions.setdefault(engine, {})[definition_id] = cached
    return cached


def load_running(session: Session, request: Request) -> tuple[runtime.Running, WorkflowState]:
    state = session.get(WorkflowState, request.id)
    running = runtime.load_live(_live_key(session, request.id), state.version,
                                definition(session, request.definition_id), state.state,
                                cal.load_calendar(session))
    return running, state


def remember_saved(session: Session, request_id: int, state: WorkflowState, text: str,
                   running: runtime.Running) -> None:
    """Offer a just-written workflow to the live cache when (and only if) this transaction commits.

    ``text`` must be what ``runtime.dump`` made of ``running`` with no change since.
    """
    session.info.setdefault(_SAVED, {})[_live_key(session, request_id)] = (state, text, running)


@event.listens_for(Session, "after_commit")
def _keep_saved(session: Session) -> None:
    for key, (state, text, running) in session.info.pop(_SAVED, {}).items():
        values = state.__dict__  # never trigger a load here: no SQL after commit
        # A state rewritten or expired since (a later save, a savepoint rolled back) is not kept.
        if values.get("state") is text:
            runtime.keep_live(key, values.get("version"), text, running)


@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _drop_saved(session: Session, *_args) -> None:
    session.info.pop(_SAVED, None)


@contextmanager
def stale_is_conflict() -> Iterator[None]:
    """A concurrent writer of the workflow state (its version moved) is a 409, wherever the flush happens."""
    try:
        yield
    except StaleDataError:
        raise Conflict("yêu cầu vừa được người khác cập nhật, hãy tải lại (modified concurrently)") from None


def flush(session: Session) -> None:
    """Write what the use case changed so far; a concurrent writer of the state makes this a 409."""
    with stale_is_conflict():
        session.flush()


def save_running(session: Session, request: Request, running: runtime.Running, state: WorkflowState,
                 actor: str = "system", flush_now: bool = True) -> list[Task]:
    """Store the workflow and its projection; a concurrent writer makes this a 409.

    With ``flush_now=False`` the caller promises to call ``flush`` itself before its
    transaction ends, and to run what it does in between under ``stale_is_conflict``
    (an autoflush may happen there), so the 409 is still raised; the rest of its writes
    then go out in the same flush.

    The workflow must not change after this call: once the transaction commits, this
    process keeps the object for the request's next use case.
    """
    opened = projection.sync(session, request, running)
    for task in opened:
        if task.step.startswith("escalate"):
            raise_escalation(session, request, running, task)
    # Dumped after the projection read it: reading a timer may fix its due time in the
    # workflow, and the kept object must be exactly what the row holds.
    text = runtime.dump(running)
    state.state = text
    if flush_now:
        flush(session)
    remember_saved(session, request.id, state, text, running)
    return opened


_ESCALATIONS_OF_DEADLINE = select(func.count()).select_from(Escalation).where(
    Escalation.request_id == bindparam("request_id"), Escalation.due_at == bindparam("due_at"))


def raise_escalation(session: Session, request: Request, running: runtime.Running, task: Task,
                     step: str | None = None, due_at: datetime | None = None) -> Escalation:
    """A deadline was missed: a row for the supervisors, the case flagged, the next reminder planned.

    ``level`` counts the escalations of the same deadline (1, 2, ...).
    """
    now = clock.now()
    if step is None:
        origin = runtime.escalation_origin(running, task.id) if task is not None else None
        step, due_at = origin if origin else (request.current_step or "unknown", request.deadline_at)
    due_at = due_at or request.deadline_at or now
    # Counted as if flushed, without flushing (the use case's other changes go out in its one
    # flush): the stored escalations of this deadline and those added in this session.
    if projection.holds_case_rows(session, request.id, Escalation):  # a batch read the case's escalations already
        previous = sum(1 for obj in projection.held_rows(session, request.id, Escalation) if obj.due_at == due_at)
    else:
        with session.no_autoflush:
            previous = session.execute(_ESCALATIONS_OF_DEADLINE,
                                       {"request_id": request.id, "due_at": due_at}).scalar_one()
    previous += sum(1 for obj in session.new
                    if isinstance(obj, Escalation) and obj.request_id == request.id and obj.due_at == due_at)
    owner = running.manifest.get("escalation_role", "head") if running is not None else "head"
    escalation = Escalation(request_id=request.id, unit_code=request.unit_code, step=step, level=previous + 1,
                            raised_at=now, due_at=due_at, owner_role=owner)
    session.add(escalation)
    if task is not None and task.due_at is None:
        # The head's escalation task is as late as the deadline it reports: it tops the inbox.
        task.due_at = due_at
    request.overdue = True
    audit.record(session, "escalated", actor="system", request_id=request.id, step=step,
                 note=f"Quá hạn bước {step} (lần {previous + 1})", after={"level": previous + 1, "due_at": iso(due_at)})
    notifications.escalated(session, request, step, previous + 1, due_at)
    repeat = int(((running.manifest.get("periods") if running is not None else None) or {})
                 .get("escalation_repeat_working_days", 0) or 0)
    if repeat > 0:
        calendar = cal.load_calendar(session)
        next_day = calendar.add_working_days(cal.local_date(now), repeat)
        session.add(Job(request_id=request.id, kind="escalation_repeat", step=step, due_at=cal.end_of_day(next_day),
                        status="waiting", created_at=now))
    return escalation


_BUMP = (update(Counter).where(Counter.name == bindparam("counter")).values(value=Counter.value + 1)
         .returning(Counter.value))


def next_in_register(session: Session, name: str) -> int:
    """The next number of a register (a year's request codes, a unit's documents of a type): 1, 2, 3 ...

    One ``UPDATE ... RETURNING`` takes the number and holds the row's lock until commit, so two
    use cases numbering at once get consecutive numbers; the register's first number creates the row.
    Through the driver (plainsql), in the session's transaction: no counter is an ORM object a
    use case changes, and even Core's handling of the statement cost four times SQLite running it.
    """
    bumped = plainsql.rows(session, _BUMP, {"counter": name})
    number = bumped[0][0] if bumped else None
    if number is None:
        connection = session.connection()
        # The session's own database decides the dialect, not whichever one the process opened.
        insert = sqlite_insert if connection.dialect.name == "sqlite" else pg_insert
        connection.execute(insert(Counter).values(name=name, value=0).on_conflict_do_nothing(index_elements=["name"]))
        number = connection.execute(_BUMP, {"counter": name}).scalar_one()
    return number


_DEPLOYED = (select(Definition).where(Definition.key == bindparam("key"), Definition.status == "deployed")
             .order_by(Definition.version.desc()).limit(1))


_DEPLOYED_ID = (select(Definition.id).where(Definition.key == bindparam("key"), Definition.status == "deployed")
                .order_by(Definition.version.desc()).limit(1))


def deployed_version(session: Session, key: str = DEFAULT_PROCESS) -> DefinitionVersion:
    """What new requests start on: the latest deployed version (its status read now, its content cached)."""
    # Through the driver (plainsql): a column read, without the ORM's handling of a statement or an autoflush.
    found = plainsql.rows(session, _DEPLOYED_ID, {"key": key})
    definition_id = found[0][0] if found else None
    if definition_id is None:
        raise NotFound(f"quy trình {key} chưa được triển khai (process not deployed)")
    return definition(session, definition_id)


def deployed_definition(session: Session, key: str = DEFAULT_PROCESS) -> Definition:
    definition = session.execute(_DEPLOYED, {"key": key}).scalar_one_or_none()
    if definition is None:
        raise NotFound(f"quy trình {key} chưa được triển khai (process not deployed)")
    return definition


# Per database engine, unit code -> (when read, name). Units are never renamed through the
# application; like the calendar, a change made by hand shows within a minute.
_UNIT_NAME_SECONDS = 60.0
_unit_names: "weakref.WeakKeyDictionary[Any, dict[str, tuple[float, str]]]" = weakref.WeakKeyDictionary()


def unit_name(session: Session, code: str) -> str:
    names = _unit_names.get(db.get_engine())
    cached = names.get(code) if names is not None else None
    if cached is not None and _monotonic() - cached[0] < _UNIT_NAME_SECONDS:
        return cached[1]
    unit = pinned_get(session, Unit, code)
    if unit is None:
        return code
    with _definitions_lock:
        _unit_names.setdefault(db.get_engine(), {})[code] = (_monotonic(), unit.name)
    return unit.name


def apply_status_effects(session: Session, request: Request, old_status: str, data: dict, main_ended: bool) -> None:
    """What changes on the request when its status moves (acknowledged, explained, published...)."""
    now = clock.now()
    new = request.status
    if old_status in ("received", "needs_info") and new in ("accepted", "refused", "redirected"):
        request.acknowledged_at = now
        request.outcome = {k: data.get(k) for k in ("decision", "ground", "redirect_to", "note") if data.get(k)}
        record_acknowledgement(session, request, new, data)
    if new in ("explained", "published") and request.explained_at is None:
        request.explained_at = now
        minutes = [{"at": iso(completed_at), "minutes": (data or {}).get("minutes")}
                   for completed_at, data in _dialogue_minutes(session, request.id)]
        explanation = dict(data.get("explanation") or {})
        explanation["minutes"] = minutes
        if data.get("extension"):
            explanation["extension"] = data["extension"]
        explanation["issued_at"] = iso(now)
        request.explanation = explanation
        record_explanation_times(session, request)
    if new == "published" and request.published_at is None:
        request.published_at = now
        publish_redacted(session, request)
    if new in projection.CLOSED_STATUSES or main_ended:
        if not request.closed:
            request.closed = True
            request.closed_at = now
        request.deadline_at = None
        request.overdue = False


_DIALOGUE_MINUTES = (select(Task.id, Task.completed_at, Task.data)
                     .where(Task.request_id == bindparam("request_id"), Task.step == "dialogue",
                            Task.status == "completed").order_by(Task.completed_at))


def _dialogue_minutes(session: Session, request_id: int) -> list[tuple[datetime, dict | None]]:
    """(completed_at, data) of the case's completed dialogue steps, oldest first, as if flushed.

    Read without an autoflush (the use case's changes go out in its one flush): the rows as
    stored, with those this session holds counted as they are in memory (a dialogue step
    completed in this very transaction included).
    """
    # Three columns, not Task entities: the rows are only read, and entities cost a flush check each;
    # on the connection, which neither flushes nor puts the ORM's handling around the statement.
    rows = {task_id: (completed_at, data) for task_id, completed_at, data
            in plainsql.rows(session, _DIALOGUE_MINUTES, {"request_id": request_id})}
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Task) and obj.request_id == request_id:
            if obj.step == "dialogue" and obj.status == "completed" and obj.completed_at is not None:
                rows[obj.id] = (obj.completed_at, obj.data)
            else:
                rows.pop(obj.id, None)
    return sorted(rows.values(), key=lambda row: row[0])

_DECISIONS = {"accepted": "accept", "refused": "refuse", "redirected": "redirect"}


def record_acknowledgement(session: Session, request: Request, status: str, data: dict) -> None:
    """The typed facts the reports count: the decision, its ground, the working days it took."""
    request.decision = _DECISIONS.get(status)
    request.refusal_ground = (str(data.get("ground"))[:64] or None) if status == "refused" and data.get("ground") else None
    calendar = cal.load_calendar(session)
    request.ack_working_days = max(0, calendar.working_days_between(cal.local_date(request.received_at),
                                                                    cal.local_date(request.acknowledged_at)))


_SUSPENSIONS = (select(AuditEvent.action, AuditEvent.at)
                .where(AuditEvent.request_id == bindparam("request_id"), AuditEvent.action.in_(("suspended", "resumed")))
                .order_by(AuditEvent.id))


def suspended_days(session: Session, request_id: int, until: datetime) -> int:
    """Calendar days a case stood suspended (art. 14), as ``supervision.resume`` moves deadlines by."""
    # Audit events are not ORM objects: no autoflush needed, only those a batch holds (audit.defer_inserts).
    audit.write_deferred(session)
    events = plainsql.rows(session, _SUSPENSIONS, {"request_id": request_id})
    total, since = 0, None
    for action, at in events:
        if action == "suspended" and since is None:
            since = at
        elif action == "resumed" and since is not None:
            total += (cal.local_date(at) - cal.local_date(since)).days
            since = None
    if since is not None:
        total += (cal.local_date(until) - cal.local_date(since)).days
    return total


def record_explanation_times(session: Session, request: Request) -> None:
    """The deadline in force when the explanation was issued, and the days it took from acceptance."""
    due = (request.deadlines or {}).get("explain_by")
    try:
        request.explain_due_at = datetime.fromisoformat(due) if due else None
    except ValueError:
        request.explain_due_at = None
    if request.acknowledged_at is not None and request.explained_at is not None:
        days = (cal.local_date(request.explained_at) - cal.local_date(request.acknowledged_at)).days
        request.explain_days = max(0, days - suspended_days(session, request.id, request.explained_at))


VIEW_AUDIT_WINDOW = timedelta(minutes=10)


def record_personal_data_view(session: Session, request: Request, actor, where: str) -> None:
    """Who looked at a requester's personal data, and where; one entry per person, case and
    ten minutes, so a page reloaded twice does not flood the trail."""
    if request.purged_at is not None or not getattr(actor, "is_official", False):
        return
    since = clock.now() - VIEW_AUDIT_WINDOW
    recent = session.execute(
        select(AuditEvent.id).where(AuditEvent.request_id == request.id, AuditEvent.action == "personal_data_viewed",
                                    AuditEvent.actor == actor.username, AuditEvent.at >= since).limit(1)
    ).first()
    if recent is None:
        audit.record(session, "personal_data_viewed", actor=actor.username, request_id=request.id, public=False,
                     after={"where": where})


_ACTIVE_RULES = (select(RedactionRule.pattern, RedactionRule.is_regex)
                 .where(RedactionRule.active.is_(True)).order_by(RedactionRule.id))


def redaction_rules(session: Session) -> list[redaction.Rule]:
    # No use case changes rules and publishes in one transaction: no autoflush for them.
    return [redaction.Rule(pattern, is_regex) for pattern, is_regex in plainsql.rows(session, _ACTIVE_RULES, {})]


def publication(session: Session, request: Request) -> dict:
    """The answer as it will be published, and each piece of personal data taken out of it."""
    person = dict(name=request.requester_name, phone=request.requester_phone,
                  email=request.requester_email, address=request.requester_address)
    rules = redaction_rules(session)
    explanation = request.explanation or {}
    out: dict = {"removed_items": []}
    for key, text in (("subject", request.subject), ("legal_basis", explanation.get("legal_basis")),
                      ("content", explanation.get("content"))):
        out[key], removed = redaction.redact_report(text, rules=rules, **person)
        out["removed_items"].extend(removed)
    out["removed"] = len(out["removed_items"])
    return out


def publish_redacted(session: Session, request: Request) -> None:
    text = publication(session, request)
    request.published_text = {"subject": text["subject"], "legal_basis": text["legal_basis"],
                              "content": text["content"], "redactions": text["removed"]}
    request.search_text = redaction.fold(" ".join([text["subject"], text["legal_basis"], text["content"],
                                                   request.code]))


def count(session: Session, query) -> int:
    return session.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
