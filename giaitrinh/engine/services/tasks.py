"""Officials' use cases: the inbox, a task with its form, claim, complete."""
from __future__ import annotations

from copy import deepcopy
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, any_, bindparam, false, func, or_, select
from sqlalchemy.orm import lazyload

from .. import audit, calendar as cal, clock, db, entityreads, forms, notifications, plainsql, projection, runtime
from .. import units as unit_tree
from ..accounts import ALL_UNITS, Actor
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..models import AuditHead, Escalation, Job, Membership, Request, Task, TaskCandidate, User, WorkflowState
from . import _common, documents
from ._common import iso

SCOPES = ("mine", "unit", "all")
SUPERVISING_ROLES = ("supervisor", "head", "admin")

REFUSAL_GROUNDS = {
    "conditions_unmet": "Người yêu cầu không đủ điều kiện (Điều 4 NĐ 59/2019)",
    "secret": "Nội dung thuộc bí mật nhà nước, bí mật đời tư, bí mật kinh doanh (khoản 1 Điều 5)",
    "internal_direction": "Nội dung chỉ đạo, điều hành nội bộ chưa ban hành (khoản 2 Điều 5)",
    "higher_direction": "Chỉ đạo của cơ quan cấp trên đối với cơ quan cấp dưới (khoản 3 Điều 5)",
    "already_explained": "Nội dung đã được giải trình hoặc đang được cơ quan có thẩm quyền giải quyết (Điều 6)",
    "disorderly": "Người yêu cầu say rượu, không làm chủ hành vi, gây rối (Điều 6)",
    "invalid_representative": "Người đại diện không có giấy tờ hợp lệ (Điều 6)",
}


# -- who may see and act --------------------------------------------------------------


def _visible_condition(every_unit: tuple[bool, ...], dialect: str, status=None):
    """Tasks an official may act on: a candidate role in the task's unit, or assigned to them, or
    a person a supervisor added to the task.

    Who asks and their roles and units are bind parameters (``username``, and ``role_0``,
    ``units_0``, ... in ``_acting_roles``'s order, from ``_role_params``); ``every_unit`` says, role
    by role, whether it holds every unit, so one statement serves every official of that shape.

    With ``status``, every alternative carries it, so each can use its own index (status and
    assignee, status and unit): SQLite's OR optimisation looks at each alternative alone, and
    with the status outside the OR it would read every open task of the city.
    """
    who = bindparam("username")
    same = [Task.status == status] if status is not None else []
    # The people a supervisor added are found by task id; the status is tested as an expression
    # (not a bare column) so the planner looks the few ids up instead of reading every open task
    # through the status index (bench/inbox.py: 450 ms to 0.4 ms at 100,000 open tasks).
    added_ids = select(TaskCandidate.task_id).where(TaskCandidate.username == who)
    if dialect == "sqlite":
        added = Task.id.in_(added_ids)
        if status is not None:
            added = and_(added, func.coalesce(Task.status, "") == status)
    else:
        # On PostgreSQL an IN (subquery) within the OR is a filter on every task (a sequential scan:
        # 14 ms of a head's inbox at 120,000 tasks); "= ANY (an array of the ids)" is one more range
        # of the primary key in the index scans the OR combines (4.5 ms).
        added = Task.id == any_(func.array(added_ids.scalar_subquery()))
        if status is not None:
            added = and_(*same, added)
    conditions = [and_(*same, Task.assignee == who), added]
    for i, every in enumerate(every_unit):
        role = Task.candidate_role == bindparam(f"role_{i}")
        if every:
            conditions.append(and_(*same, role))
        else:
            conditions.append(and_(*same, Task.unit_code.in_(bindparam(f"units_{i}", expanding=True)), role))
    return or_(*conditions)


def _acting_roles(actor: Actor) -> list[tuple[str, frozenset[str]]]:
    """The actor's roles that hold any unit, in a fixed order."""
    return sorted((role, units) for role, units in actor.roles.items() if units)


def _roles_shape(actor: Actor, scope: str) -> tuple:
    """What of the actor's roles shapes the inbox statement of ``scope``: for "unit", how many roles
    and which of them hold every unit; for "all", whether the supervised units are every unit, some
    or none; for "mine", nothing. Two officials whose statements would be built alike get one key,
    and one statement."""
    if scope == "unit":
        return tuple(ALL_UNITS in units for _role, units in _acting_roles(actor)), None
    if scope == "all":
        supervised = actor.units(*SUPERVISING_ROLES)
        return (), "all" if ALL_UNITS in supervised else "some" if supervised else "none"
    return (), None


def _role_params(actor: Actor) -> dict:
    """The values of the bind parameters ``_roles_shape``'s statements name."""
    params: dict = {"supervised_units": sorted(actor.units(*SUPERVISING_ROLES) - {ALL_UNITS})}
    for i, (role, units) in enumerate(_acting_roles(actor)):
        params[f"role_{i}"] = role
        params[f"units_{i}"] = sorted(units)
    return params


def may_act(actor: Actor, task: Task) -> bool:
    return task.assignee == actor.username or actor.has_role(task.candidate_role, task.unit_code) \
        or any(c.username == actor.username for c in task.extra_candidates)


def may_see(actor: Actor, task: Task) -> bool:
    return may_act(actor, task) or any(actor.has_role(r, task.unit_code) for r in SUPERVISING_ROLES)


# -- the inbox ------------------------------------------------------------------------


def task_summary(task: Task, calendar: cal.WorkingCalendar, now=None) -> dict:
    request = task.request
    return _summary(task.id, request.code, request.subject, request.status, task.step, task.title, task.assignee,
                    task.candidate_role, task.unit_code, task.status, task.created_at, task.due_at,
                    request.suspended_at, calendar, now or clock.now())


def _summary(task_id, request_code, subject, request_status, step, title, assignee, candidate_role, unit,
             status, created_at, due_at, suspended_at, calendar: cal.WorkingCalendar, now) -> dict:
    return {
        "id": task_id,
        "request_code": request_code,
        "subject": subject,
        "request_status": request_status,
        "step": step,
        "title": title,
        "assignee": assignee,
        "candidate_role": candidate_role,
        "unit": unit,
        "status": status,
        "created_at": iso(created_at),
        "due_at": iso(due_at),
        "working_days_left": cal.working_days_left(now, due_at, calendar) if due_at else None,
        "overdue": bool(due_at and due_at < now),
        "suspended": suspended_at is not None,
    }


# What an inbox line shows, in ``_summary``'s order: plain columns, not Task and Request entities
# (building those, with every JSON column of the request decoded, cost more than the query).
_INBOX_COLUMNS = (Task.id, Request.code, Request.subject, Request.status, Task.step, Task.title, Task.assignee,
                  Task.candidate_role, Task.unit_code, Task.status, Task.created_at, Task.due_at,
                  Request.suspended_at)


def list_tasks(actor: Actor, scope: str = "unit", request_code: str | None = None, step: str | None = None,
               overdue: bool | None = None, page: int = 1, per_page: int = 50) -> dict:
    """Open tasks sorted by urgency: the nearest deadline first, tasks without one last."""
    if scope not in SCOPES:
        raise ValidationFailed("phạm vi không hợp lệ (invalid scope)", {"scope": "mine, unit hoặc all"})
    if not actor.is_official:
        raise Forbidden("chỉ cán bộ mới có hộp công việc (officials only)")
    if scope == "all" and not any(actor.roles.get(r) for r in SUPERVISING_ROLES):
        raise Forbidden("chỉ lãnh đạo, thanh tra mới xem toàn bộ (supervisors only)")
    now = clock.now()
    overdue = True if overdue is True else False if overdue is False else None
    page_query, count_query = _inbox_query(db.get_engine().dialect.name, scope, _roles_shape(actor, scope),
                                           bool(request_code), bool(step), overdue)
    params = {"username": actor.username, "request_code": request_code, "step": step, "now": now,
              "offset": (page - 1) * per_page, "limit": per_page, **_role_params(actor)}
    # Plain columns through the driver, on a connection without a session: the ORM's handling of
    # a statement cost three times what SQLite took to run it, and Core's still twice
    # (bench/lifecycle.py looks a task up in the inbox before each completion).
    with db.reading() as connection:
        rows = plainsql.rows(connection, page_query, params)
        if 0 < len(rows) < per_page or (page == 1 and not rows):
            # The last page, read in the same snapshot: the total needs no second query.
            total = (page - 1) * per_page + len(rows)
        else:
            total = plainsql.rows(connection, count_query, params)[0][0]
        calendar = cal.load_calendar(connection)
        return {"items": [_summary(*row, calendar, now) for row in rows], "total": total,
                "page": page, "per_page": per_page}


_URGENCY = (Task.due_at.is_(None), Task.due_at, Task.created_at, Task.id)


@lru_cache(maxsize=512)
def _inbox_query(dialect: str, scope: str, roles_shape: tuple, by_code: bool, by_step: bool, overdue: bool | None):
    """The inbox statements for one shape of question, built once: building them cost more than
    running them. Returns (one page, page and size as bind parameters; the count of all pages).

    Who asks, their roles and units and the values asked for are bind parameters (username,
    ``_role_params``, request_code, step, now); the shape of the roles (``_roles_shape``) is the
    key, and so is the database's dialect (``_visible_condition`` writes one test differently for
    PostgreSQL). One statement object for every official of the same shape: SQLAlchemy's compiled
    form is then the statement executed, and it does not rebuild the result's column map on each
    call, which cost a sixth of an inbox look-up when each actor had a statement of their own.
    """
    every_unit, supervised = roles_shape
    conditions = []
    if scope == "unit":
        conditions.append(_visible_condition(every_unit, dialect, projection.OPEN_TASK))
    else:
        conditions.append(Task.status == projection.OPEN_TASK)
    if scope == "mine":
        conditions.append(Task.assignee == bindparam("username"))
    elif scope == "all" and supervised in ("some", "none"):
        conditions.append(Task.unit_code.in_(bindparam("supervised_units", expanding=True))
                          if supervised == "some" else false())
    if by_code:
        conditions.append(Request.code == bindparam("request_code"))
    if by_step:
        conditions.append(Task.step == bindparam("step"))
    if overdue is True:
        conditions.append(Task.due_at < bindparam("now"))
    elif overdue is False:
        conditions.append(or_(Task.due_at.is_(None), Task.due_at >= bindparam("now")))
    # The request is joined as the entity query's eager load joined it (an outer join on its
    # key), so the planner sees the statement it was tuned on; the count joins it only to filter.
    page = (select(*_INBOX_COLUMNS).select_from(Task).outerjoin(Request, Request.id == Task.request_id)
            .where(*conditions).order_by(*_URGENCY).offset(bindparam("offset")).limit(bindparam("limit")))
    counted = select(func.count()).select_from(Task)
    if by_code:
        counted = counted.join(Request, Request.id == Task.request_id)
    return page, counted.where(*conditions)


# -- one task ---------------------------------------------------------------------------


# Built once, the unit and its ancestors an expanding parameter: building it cost more than running it.
_UNIT_OFFICIALS = (
    select(User.id, User.username, User.full_name).join(Membership, Membership.user_id == User.id)
    .where(Membership.role == "official", User.is_active.is_(True),
           or_(Membership.unit_code.in_(bindparam("units", expanding=True)), Membership.unit_code.is_(None)))
    .order_by(User.full_name))


def _officials_of(session, unit_code: str) -> list[tuple[str, str]]:
    """Officials who may be assigned a case of this unit (their unit or a unit above it)."""
    # The tree as read at most a minute ago: every assignment reads it (units are not re-parented
    # through the application, engine/units.py).
    ancestors = unit_tree.ancestors_cached(session, unit_code)
    # Two columns, not User entities: those would also load every user's memberships. On the
    # connection, as no use case adds officials and assigns a case in one transaction.
    rows = plainsql.rows(session, _UNIT_OFFICIALS, {"units": list(ancestors)})
    seen: set[int] = set()
    officials = []
    for user_id, username, full_name in rows:  # one row per matching membership
        if user_id not in seen:
            seen.add(user_id)
            officials.append((username, full_name))
    return officials


def _form_for(session, task: Task) -> dict:
    definition = _common.definition(session, task.request.definition_id)
    meta = definition.manifest["tasks"].get(task.step, {})
    schema = definition.manifest["forms"].get(meta.get("form"), {"type": "object", "properties": {}})
    return forms.with_options(schema, {"unit_officials": lambda: _officials_of(session, task.unit_code)})


_TASK = select(Task).where(Task.id == bindparam("task_id"))
# Read fresh under the lock: another official's completion may have changed it meanwhile.
_TASK_FOR_UPDATE = _TASK.with_for_update(of=Task).execution_options(populate_existing=True)


def _check_task_id(task_id) -> None:
    if not isinstance(task_id, str) or len(task_id) > 36:
        raise NotFound("không có công việc này (unknown task)")


def _seen_by(actor: Actor, task: Task | None) -> Task:
    """The task as read, if it exists and the actor may see it."""
    if task is None:
        raise NotFound("không có công việc này (unknown task)")
    if not may_see(actor, task):
        raise Forbidden("công việc thuộc đơn vị hoặc vai trò khác (not your task)")
    return task


def _task_row(session, task_id: str, actor: Actor, lock: bool = False) -> Task:
    _check_task_id(task_id)
    return _seen_by(actor, session.execute(_TASK_FOR_UPDATE if lock else _TASK,
                                           {"task_id": task_id}).scalar_one_or_none())


# The task with its request, the request's workflow state, its other open tasks and its waiting
# jobs, in one statement: what a completion reads of the case before it runs the workflow; and the
# audit trail's head, which it appends to (on the task's rows only: an outer join, as a new
# database has none). A task's row comes once per waiting job (a case has one to three): one
# statement less than reading the jobs apart. Read through the driver and made ORM objects by
# ``entityreads`` (SQLite): the ORM's execution of it cost five times SQLite running it.
_CASE_MODELS = (Task, Request, WorkflowState, AuditHead, Job)
_CASE_OF_TASK = (
    entityreads.columns_of(*_CASE_MODELS).select_from(Task)
    .join(Request, Request.id == Task.request_id)
    .join(WorkflowState, WorkflowState.request_id == Task.request_id)
    .outerjoin(AuditHead, and_(AuditHead.id == 1, Task.id == bindparam("task_id")))
    # Two equalities, not IN: an IN of values is expanded into the SQL at every execution.
    .outerjoin(Job, and_(Job.request_id == Task.request_id, or_(Job.status == "waiting", Job.status == "paused")))
    .where(Task.request_id == select(Task.request_id).where(Task.id == bindparam("task_id")).scalar_subquery(),
           or_(Task.status == projection.OPEN_TASK, Task.id == bindparam("task_id"))))
_WAITING_JOBS = select(Job).where(Job.request_id == bindparam("request_id"), Job.status.in_(("waiting", "paused")))
# PostgreSQL, under the request's lock: the case's open tasks (the task itself among them, whatever
# its status) locked and read fresh, with the workflow state, in one round trip; and its waiting
# jobs, locked as the projection locks them (a scheduler's claim leases jobs without the request).
_LOCKED_CASE = (
    select(Task, WorkflowState).join(WorkflowState, WorkflowState.request_id == Task.request_id)
    .where(Task.request_id == bindparam("request_id"),
           or_(Task.status == projection.OPEN_TASK, Task.id == bindparam("task_id")))
    .options(lazyload(Task.request)).with_for_update(of=Task).execution_options(populate_existing=True))
_LOCKED_WAITING_JOBS = _WAITING_JOBS.with_for_update().execution_options(populate_existing=True)


def _task_with_case(session, task_id: str, actor: Actor) -> Task:
    """``_task_row``, reading at once the rows of its case a completion looks at (SQLite only:
    BEGIN IMMEDIATE already holds the write lock, nobody changes them until the commit).

    The session then holds the case's open tasks, waiting jobs and workflow state
    (``projection.hold_case_rows``): the projection and the state load read none of them again.
    """
    _check_task_id(task_id)
    rows = entityreads.rows(session, _CASE_OF_TASK, {"task_id": task_id}, _CASE_MODELS, request_model=Request)
    task, head = next(((row, head) for row, _request, _state, head, _job in rows if row.id == task_id),
                      (None, None))
    task = _seen_by(actor, task)
    audit.hold_head(session, head)
    _hold_case(session, task.request_id, rows)
    return task


def _locked_case(session, request: Request, task_id: str, actor: Actor) -> Task:
    """PostgreSQL's ``_task_with_case``, once the request row is locked: the task read again (another
    official's completion may have changed it meanwhile), and the rows of its case a completion
    looks at held for the projection and the state load, which then read none of them again."""
    rows = session.execute(_LOCKED_CASE, {"request_id": request.id, "task_id": task_id}).all()
    task = _seen_by(actor, next((row for row, _state in rows if row.id == task_id), None))
    _hold_case(session, request.id, rows, _LOCKED_WAITING_JOBS)
    return task


def _hold_case(session, request_id: int, rows, waiting_jobs=None) -> None:
    """Hold the case's rows just read, and its waiting jobs (read with them, or by ``waiting_jobs``),
    for the projection and the state load."""
    held = {id(obj): obj for row in rows for obj in row if obj is not None}
    if waiting_jobs is not None:
        held.update((id(job), job) for job in session.execute(waiting_jobs, {"request_id": request_id}).scalars())
    projection.hold_case_rows(session, [request_id], (Task, Job), rows=list(held.values()))


def _previous_data(session, task: Task) -> dict:
    """What was submitted the last time round this step (a returned draft is not retyped)."""
    row = session.execute(
        select(Task).where(Task.request_id == task.request_id, Task.step == task.step, Task.status == "completed")
        .order_by(Task.completed_at.desc()).limit(1)
    ).scalar_one_or_none()
    data = deepcopy(row.data) if row is not None and row.data else {}
    data.pop("extend", None)  # an extension is never proposed twice by default
    return data


def _draft(session, task: Task) -> dict | None:
    """The explanation as drafted so far (the head approves what the official wrote, with minutes)."""
    rows = session.execute(
        select(Task).where(Task.request_id == task.request_id, Task.step.in_(("explain", "dialogue")),
                           Task.status == "completed").order_by(Task.completed_at)
    ).scalars().all()
    draft: dict = {}
    for row in rows:
        data = row.data or {}
        if row.step == "explain" and data.get("explanation"):
            draft["explanation"] = data["explanation"]
            if data.get("extend"):
                draft["extension"] = data["extend"]
        elif row.step == "dialogue" and data.get("minutes"):
            draft.setdefault("minutes", []).append(data["minutes"])
    return draft or None


def get_task(task_id: str, actor: Actor) -> dict:
    """The task with its case, including the requester's personal data: the look is audited."""
    with db.transaction() as session:
        task = _task_row(session, task_id, actor)
        _common.record_personal_data_view(session, task.request, actor, f"task:{task.step}")
        calendar = cal.load_calendar(session)
        result = task_summary(task, calendar)
        definition = _common.definition(session, task.request.definition_id)
        meta = definition.manifest["tasks"].get(task.step, {})
        result["form"] = _form_for(session, task)
        result["instructions"] = meta.get("instructions", "")
        result["may_act"] = may_act(actor, task) and task.status == projection.OPEN_TASK
        from .supervision import urges_for_task
        result["urges"] = urges_for_task(session, task) if task.status == projection.OPEN_TASK else []
        result["data"] = task.data if task.status != projection.OPEN_TASK else _previous_data(session, task)
        request = task.request
        from .requests import public_summary, timeline
        summary = public_summary(session, request)
        summary.update({
            "content": request.content,
            "channel": request.channel,
            "requester": {"name": request.requester_name, "address": request.requester_address,
                          "phone": request.requester_phone, "email": request.requester_email,
                          "kind": request.requester_kind},
            "outcome": request.outcome or {},
            "explanation": request.explanation,
            "assignee": request.assignee,
            "timeline": timeline(session, request),
        })
        result["request"] = summary
        if request.explanation is None and task.step != "explain":
            result["draft"] = _draft(session, task)
        if task.step == "publish" or meta.get("form") == "publish.json":
            result["preview"] = _common.publication(session, request)
        return result


def _check_actionable(task: Task, actor: Actor) -> None:
    if task.status != projection.OPEN_TASK:
        raise Conflict("công việc đã được hoàn thành hoặc hủy (task is no longer open)")
    if not may_act(actor, task):
        raise Forbidden("bạn không có vai trò thực hiện công việc này (not your role)")
    if task.assignee and task.assignee != actor.username:
        raise Conflict(f"công việc đang do {task.assignee} xử lý (claimed by someone else)")


def claim(task_id: str, actor: Actor) -> dict:
    with db.transaction() as session:
        _common.request_for_update(session, _task_row(session, task_id, actor).request.code)
        task = _task_row(session, task_id, actor, lock=True)
        _check_actionable(task, actor)
        if task.assignee != actor.username:
            task.assignee = actor.username
            audit.record(session, "claimed", actor=actor.username, request_id=task.request_id, step=task.step,
                         public=False, after={"task": task.id})
        return task_summary(task, cal.load_calendar(session))


# -- completing a task ----------------------------------------------------------------------


def _fill_defaults(schema: dict, data: dict) -> dict:
    """Every top-level field present (schema default or None), so conditions can name them."""
    filled = dict(data)
    for name, prop in schema.get("properties", {}).items():
        if name not in filled:
            filled[name] = deepcopy(prop.get("default")) if isinstance(prop, dict) else None
    return filled


def _check_rules(running: runtime.Running, task_id: str, rules: list[dict], data: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    for rule in rules:
        try:
            ok = runtime.evaluate_with(running, task_id, rule["expr"], data)
        except Exception:  # a rule that cannot be evaluated on this data fails closed
            ok = False
        if not ok:
            errors.setdefault(rule["field"], rule["message"])
    return errors


def _events_for(step: str, data: dict, before: str, request: Request) -> list[tuple[str, str | None, bool]]:
    """Audit events (action, note, public) that a completed step means for the case."""
    events: list[tuple[str, str | None, bool]] = []
    after = request.status
    if before in ("received", "needs_info") and after != before:
        if after == "refused":
            events.append(("refused", REFUSAL_GROUNDS.get(data.get("ground"), data.get("ground")), True))
        elif after == "redirected":
            events.append(("redirected", f"Đề nghị gửi yêu cầu đến: {data.get('redirect_to')}", True))
        elif after == "needs_info":
            events.append(("info_requested", data.get("note"), True))
        elif after == "accepted":
            events.append(("accepted", data.get("note"), True))
    if step == "assign":
        events.append(("assigned", None, True))
    if step == "explain" and data.get("extend"):
        events.append(("extended", f"{data['extend'].get('reason')} — hạn mới: {request.deadlines.get('explain_by', '')[:10]}", True))
    if step == "dialogue":
        events.append(("dialogue", None, True))
    if step == "approve":
        events.append(("approved" if data.get("approved") else "returned", data.get("note"), False))
    if request.explained_at is not None and before not in ("explained", "published") and after in ("explained", "published"):
        events.append(("explained", None, True))
    if after == "published" and before != "published":
        events.append(("published", None, True))
    if step == "publish" and not data.get("publish"):
        events.append(("publication_declined", data.get("note"), False))
    if step.startswith("escalate"):
        events.append(("escalation_handled", data.get("action"), False))
    return events


def complete(task_id: str, data: Any, actor: Actor) -> dict:
    """Validate the form, run the workflow on, write state, projection and audit in one transaction."""
    if not isinstance(data, dict):
        raise ValidationFailed("dữ liệu biểu mẫu phải là một đối tượng (data must be an object)",
                               {"data": "Dữ liệu biểu mẫu phải là một đối tượng JSON (expected an object)."})
    with db.transaction() as session:
        audit.defer_inserts(session)  # the completion's events in one statement, at its flush
        if db.is_sqlite():
            # BEGIN IMMEDIATE already holds the database's one write lock, and the task's
            # row came with its request and the rest of its case: one read is enough.
            task = _task_with_case(session, task_id, actor)
            request = task.request
        else:
            # The instance row is the one lock two officials queue on; the task is read
            # again once it is held, so the second of them sees the first one's result (409).
            request = _common.request_for_update(session, _task_row(session, task_id, actor).request.code)
            task = _locked_case(session, request, task_id, actor)
        _check_actionable(task, actor)
        if request.suspended_at is not None:
            raise Conflict("yêu cầu đang tạm đình chỉ giải trình (request suspended)")
        schema = _form_for(session, task)
        data = forms.normalize(data)
        fields = forms.validate(schema, data)
        if fields:
            raise ValidationFailed("biểu mẫu chưa hợp lệ (invalid form)", fields)
        definition = _common.definition(session, request.definition_id)
        meta = definition.manifest["tasks"].get(task.step, {})
        running, state = _common.load_running(session, request)
        filled = _fill_defaults(schema, data)
        fields = _check_rules(running, task.id, meta.get("rules", []), filled)
        if fields:
            raise ValidationFailed("biểu mẫu chưa hợp lệ (invalid form)", fields)
        before = request.status
        try:
            runtime.complete_human_task(running, task.id, filled, forms.field_names(schema))
        except LookupError:
            raise Conflict("công việc không còn chờ xử lý (task is no longer ready)") from None
        now = clock.now()
        task.status = "completed"
        task.completed_at = now
        task.completed_by = actor.username
        task.assignee = task.assignee or actor.username
        task.data = deepcopy(data)
        # One flush for the state, projection, effects and audit; any autoflush on the way
        # that meets a concurrent writer is the same 409.
        with _common.stale_is_conflict():
            opened = _common.save_running(session, request, running, state, flush_now=False)
            status, wf_data, main_ended = running.position
            _common.apply_status_effects(session, request, before, wf_data if status else filled, main_ended)
            if task.step.startswith("escalate"):
                for escalation in session.execute(
                    select(Escalation).where(Escalation.request_id == request.id, Escalation.resolved_at.is_(None))
                ).scalars():
                    escalation.resolved_at = now
                    escalation.resolved_by = actor.username
                    escalation.note = data.get("action") or data.get("note")
            audit.record(session, "task_completed", actor=actor.username, request_id=request.id, step=task.step,
                         public=False, before={"status": before}, after={"status": request.status, "data": data})
            events = _events_for(task.step, data, before, request)
            for action, note, public in events:
                audit.record(session, action, actor=actor.username, request_id=request.id, step=task.step,
                             note=note, public=public, after={"status": request.status, "deadlines": request.deadlines})
                notifications.case_event(session, request, action, note, by=actor.username)
            documents.issue_for_events(session, request, [e[0] for e in events], filled, actor, task.step)
            _common.flush(session)
        calendar = cal.load_calendar(session)
        from .requests import public_summary
        result = {"request": public_summary(session, request),
                  "next_tasks": [task_summary(t, calendar, now) for t in opened]}
    from .. import timers
    timers.wake()
    return result
