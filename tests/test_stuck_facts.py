"""The stuck list and the dashboard's per-unit figures from the request row's facts
(engine/attention.py) say exactly what the task, job and escalation rows say, through suspension
and resumption, incidents and retries, timers firing, escalations raised and handled,
reassignment, the requester's missing information, termination and rows changed by hand."""
from __future__ import annotations

from sqlalchemy import and_, exists, func, not_, or_, select

from giaitrinh.engine import attention, calendar as cal, clock, db, timers
from giaitrinh.engine.models import Escalation, Job, Request, Task
from giaitrinh.engine.services import requests, supervision, tasks

from .helpers import EXPLANATION, do, refreshes_while, submit, task_id, to_explain
from .test_supervision import make_incident, make_user

REASONS = tuple(supervision.STUCK_REASONS)


def old_reasons(now, cutoff) -> dict[str, set[str]]:
    """Every case's stuck reasons by the definition the list used before the facts: look-ups in
    the task and job rows of each case."""
    has_task = exists().where(Task.request_id == Request.id, Task.status == "open")
    has_job = exists().where(Job.request_id == Request.id, Job.status.in_(("waiting", "paused")))
    conditions = {
        "task_overdue": exists().where(Task.request_id == Request.id, Task.status == "open", Task.due_at < now),
        "incident": exists().where(Job.request_id == Request.id, Job.status == "incident"),
        "no_work": and_(not_(has_task), not_(has_job), Request.status != "needs_info"),
        "inactive": Request.last_activity_at < cutoff,
    }
    live = and_(Request.closed.is_(False), Request.suspended_at.is_(None))
    with db.read_only() as session:
        rows = session.execute(select(Request.code, *(and_(live, c) for c in conditions.values()))).all()
    return {code: {name for name, flag in zip(conditions, flags) if flag} for code, *flags in rows}


def facts_from_rows() -> dict[str, tuple]:
    """What the facts must be, recomputed from the rows, next to what the request row holds."""
    with db.read_only() as session:
        due = (select(func.min(Task.due_at)).where(Task.request_id == Request.id, Task.status == "open")
               .scalar_subquery())
        pending = or_(exists().where(Task.request_id == Request.id, Task.status == "open"),
                      exists().where(Job.request_id == Request.id, Job.status.in_(attention.UNFINISHED_JOBS)),
                      Request.status == "needs_info")
        unresolved = exists().where(Escalation.request_id == Request.id, Escalation.resolved_at.is_(None))
        rows = session.execute(select(Request.code, Request.task_due_at, due, Request.work_pending, pending,
                                      Request.escalated, unresolved)).all()
    return {code: ((stored_due, bool(stored_pending), bool(stored_escalated)),
                   (computed_due, bool(computed_pending), bool(computed_escalated)))
            for code, stored_due, computed_due, stored_pending, computed_pending, stored_escalated, computed_escalated
            in rows}


def check_board(boss, expected: dict[str, set[str]]) -> None:
    """The dashboard's per-unit stuck and escalated figures, and its totals, by the old definitions:
    the stuck cases as the list finds them, the open cases joined to their unresolved escalations."""
    with db.read_only() as session:
        units = dict(session.execute(select(Request.code, Request.unit_code)).all())
        escalated = set(session.execute(
            select(Request.code).join(Escalation, Escalation.request_id == Request.id)
            .where(Escalation.resolved_at.is_(None), Request.closed.is_(False))).scalars())
    board = supervision.dashboard(boss)
    for row in board["units"]:
        own = row["own"]
        assert own["stuck"] == sum(1 for c, r in expected.items() if r and units[c] == row["unit"]), row["unit"]
        assert own["escalated"] == sum(1 for c in escalated if units[c] == row["unit"]), row["unit"]
    assert board["totals"]["stuck"] == sum(1 for r in expected.values() if r)
    assert board["totals"]["escalated"] == len(escalated)
    page = supervision.overview(boss, show="stuck")
    assert page["counts"]["stuck"] == page["cases"]["total"] == supervision.count_instances(boss, stuck=True)
    assert page["counts"]["open"] == supervision.count_instances(boss, closed=False)
    assert page["counts"]["overdue"] == supervision.count_instances(boss, overdue=True)


def check(boss, codes) -> dict[str, set[str]]:
    """The new path agrees with the old definition on every case, in the list, its counts and filters."""
    for code, (stored, computed) in facts_from_rows().items():
        assert stored == computed, code
    now = clock.now()
    with db.read_only() as session:
        cutoff = supervision.inactive_cutoff(cal.load_calendar(session), now, supervision.inactive_days(session))
    expected = old_reasons(now, cutoff)
    listed = {i["code"]: i for i in supervision.list_instances(boss, per_page=500)["items"]}
    assert set(listed) == set(expected) >= set(codes)
    for code, item in listed.items():
        assert {r["code"] for r in item["stuck_reasons"]} == expected[code], code
        assert item["stuck"] == bool(expected[code])
    for code in codes:
        assert {r["code"] for r in supervision.stuck_reasons(code, boss)} == expected[code], code

    def found(**criteria):
        result = supervision.list_instances(boss, per_page=500, **criteria)
        assert result["total"] == len(result["items"])
        return {i["code"] for i in result["items"]}

    assert found(stuck=True) == {c for c, r in expected.items() if r}
    assert found(stuck=False) == {c for c, r in expected.items() if not r}
    for reason in REASONS:
        assert found(reason=reason) == {c for c, r in expected.items() if reason in r}, reason
    with db.read_only() as session:
        failed = set(session.execute(select(Request.code).join(Job, Job.request_id == Request.id)
                                     .where(Job.status == "incident")).scalars())
    assert found(incident=True) == failed
    assert found(incident=False) == set(expected) - failed
    check_board(boss, expected)
    return expected


def test_the_facts_and_the_old_definition_agree_through_a_cases_life(world, people, fixed_clock, monkeypatch):
    boss = people["thanhtra"]
    fresh, accepted, explaining, suspended, refused, handmade, ended = (submit()["code"] for _ in range(7))
    waiting_info = submit()
    info = waiting_info["code"]
    do(accepted, "receive", people["tiepnhan"], {"decision": "accept"})
    to_explain(explaining, people)
    to_explain(suspended, people)
    do(info, "receive", people["tiepnhan"], {"decision": "needs_info", "note": "Bổ sung quyết định"})
    do(refused, "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    to_explain(ended, people)
    codes = [fresh, accepted, explaining, suspended, info, refused, handmade, ended]
    assert check(boss, codes)[fresh] == set()

    supervision.suspend(suspended, people["lanhdao"], "unable", "Người yêu cầu nằm viện")
    substitute = make_user("chuyenvien3", "official", "MX")
    supervision.reassign(explaining, boss, "chuyenvien3", "Chuyên viên cũ nghỉ phép")
    # Rows changed outside any use case (a task lost, its timer gone): nothing will move the case.
    with db.transaction() as session:
        request_id = session.execute(select(Request.id).where(Request.code == handmade)).scalar_one()
        for task in session.execute(select(Task).where(Task.request_id == request_id)).scalars():
            task.status = "cancelled"
        for job in session.execute(select(Job).where(Job.request_id == request_id)).scalars():
            job.status = "done"
    assert check(boss, codes)[handmade] == {"no_work"}

    # Past the acknowledgement deadline: the reception timers fail until they are incidents.
    fixed_clock.advance(days=11)
    make_incident(monkeypatch, fixed_clock)
    seen = check(boss, codes)
    assert {"incident", "task_overdue"} <= seen[fresh] and seen[suspended] == set()
    # The supervisor retries: the timers fire for real, the head's escalation tasks open.
    for code in (fresh, accepted):
        for incident in supervision.incidents(code, boss):
            supervision.retry_incident(code, incident["id"], boss, "Đã sửa máy chủ")
    check(boss, codes)
    assert timers.run_due() >= 1
    seen = check(boss, codes)
    assert "incident" not in seen[fresh]
    with db.read_only() as session:
        flagged = set(session.execute(select(Request.code).where(Request.escalated.is_(True))).scalars())
    assert fresh in flagged
    # The head records what was done about one of them: that case is no longer escalated.
    tasks.complete(task_id(fresh, "escalate", people["lanhdao"]),
                   {"cause": "Cán bộ nghỉ ốm", "action": "Giao cán bộ khác"}, people["lanhdao"])
    check(boss, codes)
    with db.read_only() as session:
        assert not session.execute(select(Request.escalated).where(Request.code == fresh)).scalar_one()

    supervision.resume(suspended, people["lanhdao"], "Đã khỏi")
    requests.provide_info(info, waiting_info["token"], "Bản sao Quyết định số 12/QĐ-UBND")
    supervision.terminate(ended, boss, "withdrawn", "Người yêu cầu rút toàn bộ yêu cầu")
    do(explaining, "explain", substitute, {"explanation": EXPLANATION})
    check(boss, codes)

    # Days later: every reason at once, the escalation reminders due and fired.
    fixed_clock.advance(days=9)
    timers.run_due()
    seen = check(boss, codes)
    assert seen[handmade] == {"no_work", "inactive"} and "task_overdue" in seen[accepted]
    assert seen[ended] == seen[refused] == set()
    # Escalations resolved by hand, no task or job touched: the cases are no longer escalated.
    with db.transaction() as session:
        unresolved = session.execute(select(Escalation).where(Escalation.resolved_at.is_(None))).scalars().all()
        assert unresolved
        for escalation in unresolved:
            escalation.resolved_at = clock.now()
    check(boss, codes)
    supervision.set_inactive_days(people["admin"], 20)
    assert check(boss, codes)[handmade] == {"no_work"}


def test_a_failed_job_that_was_all_the_case_had_left_is_also_nothing_waiting(world, people, fixed_clock):
    boss = people["thanhtra"]
    code, other = submit()["code"], submit()["code"]
    with db.transaction() as session:  # by hand: its task gone, its only timer failed
        request_id = session.execute(select(Request.id).where(Request.code == code)).scalar_one()
        for task in session.execute(select(Task).where(Task.request_id == request_id)).scalars():
            task.status = "cancelled"
        for job in session.execute(select(Job).where(Job.request_id == request_id)).scalars():
            job.status = "incident"
    assert check(boss, [code, other]) == {code: {"incident", "no_work"}, other: set()}
    [incident] = supervision.incidents(code, boss)
    supervision.retry_incident(code, incident["id"], boss, "Thử lại")
    assert check(boss, [code, other]) == {code: set(), other: set()}


def test_a_step_that_leaves_a_task_open_writes_the_facts_with_the_request_row(world, people, fixed_clock, monkeypatch):
    boss = people["thanhtra"]
    code = submit()["code"]
    # A step completed, the next one open: known from the projection, no statement of their own.
    assert refreshes_while(lambda: do(code, "receive", people["tiepnhan"], {"decision": "accept"})) == 0
    check(boss, [code])
    # A deadline fired: the escalation task open and the new escalation flag the case, in memory too.
    fixed_clock.advance(days=30)
    assert refreshes_while(timers.run_due) == 0
    check(boss, [code])
    with db.read_only() as session:
        assert session.execute(select(Request.escalated).where(Request.code == code)).scalar_one()
    # Handling the escalation resolves it: whether another stays open is read from the rows.
    assert refreshes_while(lambda: tasks.complete(task_id(code, "escalate", people["lanhdao"]),
                                                   {"cause": "Nghỉ ốm", "action": "Giao người khác"},
                                                   people["lanhdao"])) == 1
    check(boss, [code])
    # Past the cases a flush judges in memory, one statement for all of them.
    monkeypatch.setattr(attention, "IN_MEMORY_CASES", 0)
    other = submit()["code"]
    assert refreshes_while(lambda: do(other, "receive", people["tiepnhan"], {"decision": "accept"})) == 1
    check(boss, [code, other])


def test_a_scheduler_batch_of_deadlines_judges_every_case_in_memory(world, people, fixed_clock):
    """Several cases' deadlines fired in one flush: no statement of their own, the facts right."""
    boss = people["thanhtra"]
    codes = [submit()["code"] for _ in range(7)]
    for code in codes:
        do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    fixed_clock.advance(days=30)
    assert refreshes_while(timers.run_due) == 0
    check(boss, codes)
    with db.read_only() as session:
        assert set(session.execute(select(Request.escalated).where(Request.code.in_(codes))).scalars()) == {True}
