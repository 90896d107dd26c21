"""Every path of the lifecycle through the engine services, with the clock moved by hand."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from giaitrinh.engine import audit, db, timers
from giaitrinh.engine.accounts import Actor
from giaitrinh.engine.errors import Conflict, Forbidden, NotFound, ValidationFailed
from giaitrinh.engine.models import AuditEvent, Escalation, Job, Request, Task, WorkflowState
from giaitrinh.engine.services import requests, supervision, tasks
from giaitrinh.engine.services.tasks import REFUSAL_GROUNDS

from .helpers import EXPLANATION, do, submit, task_id, to_explain


def events(code, token):
    return [e["event"] for e in requests.view(code, token)["timeline"]]


def test_submission_gives_code_token_and_the_acknowledgement_deadline(world):
    sub = submit()
    assert sub["code"] == "GT-2026-000001"
    assert len(sub["token"]) >= 32
    assert sub["status"] == "received"
    assert sub["deadlines"]["acknowledge_by"] == "2026-11-30T23:59:59+07:00"
    assert submit()["code"] == "GT-2026-000002"


def test_a_submission_writes_its_request_once_with_its_case_settled(world):
    from sqlalchemy import event

    statements: list[str] = []
    engine = db.get_engine()

    def traced(dbapi_connection, _record):  # what SQLite runs, the driver's own statements included
        dbapi_connection.set_trace_callback(statements.append)

    previous = submit()
    if db.is_sqlite():
        event.listen(engine, "connect", traced)
        engine.dispose()
    try:
        code = submit()["code"]
    finally:
        if db.is_sqlite():
            event.remove(engine, "connect", traced)
            engine.dispose()
    with db.read_only() as session:
        before = session.execute(select(Request.id).where(Request.code == previous["code"])).scalar_one()
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        task = session.execute(select(Task).where(Task.request_id == request.id)).scalar_one()
        assert session.get(WorkflowState, request.id) is not None
        assert request.id == before + 1
        assert (request.status, request.current_step, request.task_due_at, request.work_pending) == \
            ("received", "receive", task.due_at, True)
        assert request.deadline_at is not None and task.due_at is not None
    if db.is_sqlite():
        writes = [s.split("(")[0].strip() for s in statements if "requests " in s and not s.startswith("--")]
        # (SQLite's trace repeats a statement for each trigger it runs)
        assert {s for s in writes if s.startswith(("INSERT", "UPDATE"))} == {"INSERT INTO requests"}, writes


def test_a_unit_created_after_the_tree_was_read_takes_requests_and_an_unknown_one_is_refused(world):
    from giaitrinh.engine.models import Unit

    assert submit()["status"] == "received"  # the unit tree is now read and cached
    with db.transaction() as session:
        session.add(Unit(code="NEW", name="Phường Mới", parent_code=None))
    assert submit(unit="NEW")["status"] == "received"
    with pytest.raises(ValidationFailed) as refused:
        submit(unit="NOWHERE")
    assert "unit" in refused.value.fields
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(Request)).scalar_one() == 2


def test_accept_assign_explain_approve_publish(world, people, fixed_clock):
    sub = submit()
    code, token = sub["code"], sub["token"]
    fixed_clock.advance(days=1)
    result = do(code, "receive", people["tiepnhan"], {"decision": "accept", "note": "Đủ điều kiện"})
    assert result["request"]["status"] == "accepted"
    # 15 days from Saturday 21/11 end on Sunday 6/12, rolled to Monday 7/12.
    assert result["request"]["deadlines"]["explain_by"] == "2026-12-07T23:59:59+07:00"
    assert [t["step"] for t in result["next_tasks"]] == ["assign"]
    do(code, "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    mine = tasks.list_tasks(people["chuyenvien"], scope="mine")["items"]
    assert [t["step"] for t in mine] == ["explain"] and mine[0]["working_days_left"] > 0
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    view = requests.view(code, token)
    assert view["status"] == "explained" and view["explanation"]["legal_basis"] == EXPLANATION["legal_basis"]
    detail = tasks.get_task(task_id(code, "publish", people["tiepnhan"]), people["tiepnhan"])
    assert "0912 345 678" not in detail["preview"]["content"] and detail["preview"]["removed"] >= 2
    result = do(code, "publish", people["tiepnhan"], {"publish": True})
    assert result["request"]["status"] == "published" and result["request"]["closed"]
    assert events(code, token) == ["submitted", "accepted", "assigned", "explained", "published"]
    found = requests.search_published("thu hoi dat")
    assert [i["code"] for i in found["items"]] == [code]
    text = found["items"][0]["explanation"]["content"]
    assert "Nguyễn Văn An" not in text and "0912 345 678" not in text and "[đã ẩn]" in text
    assert requests.search_published("thu hồi ĐẤT")["total"] == 1
    assert requests.search_published("thu hoi nha")["total"] == 0
    rated = requests.rate(code, token, 5, "Rõ ràng")
    assert rated["score"] == 5
    with pytest.raises(Conflict):
        requests.rate(code, token, 4)
    with db.read_only() as session:
        assert audit.verify(session).ok
        assert session.execute(select(func.count()).select_from(Task).where(Task.status == "open")).scalar_one() == 0


@pytest.mark.parametrize("ground", sorted(REFUSAL_GROUNDS))
def test_refuse_with_each_legal_ground(world, people, ground):
    sub = submit()
    result = do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": ground})
    assert result["request"]["status"] == "refused" and result["request"]["closed"]
    timeline = requests.view(sub["code"], sub["token"])["timeline"]
    assert timeline[-1]["event"] == "refused" and timeline[-1]["note"] == REFUSAL_GROUNDS[ground]
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(Job).where(Job.status == "waiting")).scalar_one() == 0


def test_refusal_needs_a_ground_from_the_decree(world, people):
    sub = submit()
    with pytest.raises(ValidationFailed) as caught:
        do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse"})
    assert "ground" in caught.value.fields
    with pytest.raises(ValidationFailed) as caught:
        do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "too_busy"})
    assert "ground" in caught.value.fields


def test_redirect_to_the_competent_body(world, people):
    sub = submit()
    result = do(sub["code"], "receive", people["tiepnhan"], {"decision": "redirect", "redirect_to": "Sở Xây dựng"})
    assert result["request"]["status"] == "redirected"
    assert "Sở Xây dựng" in requests.view(sub["code"], sub["token"])["timeline"][-1]["note"]


def test_needs_info_then_the_requester_adds_it_and_the_clock_restarts(world, people, fixed_clock):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "needs_info", "note": "Bổ sung quyết định"})
    assert requests.view(sub["code"], sub["token"])["status"] == "needs_info"
    with pytest.raises(Conflict):
        requests.rate(sub["code"], sub["token"], 3)  # nothing explained yet
    fixed_clock.advance(days=7)  # Friday 27/11
    result = requests.provide_info(sub["code"], sub["token"], "Bản sao Quyết định số 12/QĐ-UBND")
    assert result["status"] == "received"
    assert result["deadlines"]["acknowledge_by"] == "2026-12-04T23:59:59+07:00"
    assert "Quyết định số 12" in requests.view(sub["code"], sub["token"])["content"]
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    assert events(sub["code"], sub["token"]) == ["submitted", "info_requested", "info_provided", "accepted"]


def test_dialogue_loop_keeps_the_minutes_in_the_explanation(world, people):
    sub = submit()
    to_explain(sub["code"], people)
    official = people["chuyenvien"]
    do(sub["code"], "explain", official, {"explanation": EXPLANATION, "needs_dialogue": True})
    assert requests.view(sub["code"], sub["token"])["status"] == "dialogue"
    do(sub["code"], "dialogue", official, {"minutes": "Hai bên đã trao đổi, người yêu cầu thống nhất."})
    detail = tasks.get_task(task_id(sub["code"], "explain", official), official)
    assert detail["data"]["explanation"] == EXPLANATION  # the draft comes back, not retyped
    do(sub["code"], "explain", official, {"explanation": EXPLANATION})
    do(sub["code"], "approve", people["lanhdao"], {"approved": True})
    view = requests.view(sub["code"], sub["token"])
    assert view["explanation"]["minutes"][0]["minutes"].startswith("Hai bên")
    assert "dialogue" in events(sub["code"], sub["token"])


def test_head_returns_the_draft(world, people):
    sub = submit()
    to_explain(sub["code"], people)
    do(sub["code"], "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    with pytest.raises(ValidationFailed) as caught:
        do(sub["code"], "approve", people["lanhdao"], {"approved": False})
    assert "note" in caught.value.fields
    do(sub["code"], "approve", people["lanhdao"], {"approved": False, "note": "Bổ sung căn cứ"})
    assert task_id(sub["code"], "explain", people["chuyenvien"])


def test_one_extension_then_a_second_is_refused(world, people):
    sub = submit()
    to_explain(sub["code"], people)
    official = people["chuyenvien"]
    result = do(sub["code"], "explain", official, {"extend": {"days": 15, "reason": "Nội dung phức tạp"}})
    # 20/11 + 15 days = 5/12 (Sat) -> 7/12; + 15 days = 22/12.
    assert result["request"]["deadlines"]["explain_by"] == "2026-12-22T23:59:59+07:00"
    assert result["request"]["extended"]
    with pytest.raises(ValidationFailed) as caught:
        do(sub["code"], "explain", official, {"extend": {"days": 5, "reason": "Cần thêm thời gian"}})
    assert "extend" in caught.value.fields
    with pytest.raises(ValidationFailed) as caught:
        do(sub["code"], "explain", official, {"extend": {"days": 16, "reason": "Quá dài"}})
    assert "extend.days" in caught.value.fields
    do(sub["code"], "explain", official, {"explanation": EXPLANATION})
    assert events(sub["code"], sub["token"]).count("extended") == 1
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == sub["code"])).scalar_one()
        assert request.explanation is None  # not approved yet
        job = session.execute(select(Job).where(Job.request_id == request.id, Job.status == "waiting")).scalars().all()
        assert {j.due_at.isoformat() for j in job} == {"2026-12-22T16:59:59+00:00"}


def test_missed_deadline_escalates_to_the_head_and_the_supervisor(world, people, fixed_clock):
    sub = submit()
    fixed_clock.advance(days=10)  # 30/11 09:00: due today, not yet late
    assert timers.run_due() == 0
    fixed_clock.advance(hours=15)  # 1/12 00:00: past 30/11 23:59:59
    assert timers.run_due() == 1
    view = requests.view(sub["code"], sub["token"])
    assert view["overdue"] is True and view["status"] == "received"
    escalation_task = task_id(sub["code"], "escalate", people["lanhdao"])
    listed = supervision.list_escalations(people["thanhtra"], open_only=True)["items"]
    assert [(e["request_code"], e["step"], e["level"], e["owner_role"]) for e in listed] == [(sub["code"], "receive", 1, "head")]
    assert timers.run_due() == 0  # fires once
    # Still late two working days later: a second escalation of the same deadline.
    fixed_clock.advance(days=4)
    timers.run_due()
    levels = [e["level"] for e in supervision.list_escalations(people["thanhtra"])["items"]]
    assert sorted(levels) == [1, 2]
    # The receive task is still there for reception; the head records what was done.
    tasks.complete(escalation_task, {"cause": "Cán bộ nghỉ ốm", "action": "Giao cán bộ khác"}, people["lanhdao"])
    assert supervision.list_escalations(people["thanhtra"], open_only=True)["total"] == 0
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})


def test_suspension_pauses_the_clock_and_resumption_moves_the_deadline(world, people, fixed_clock):
    sub = submit()
    to_explain(sub["code"], people)
    assert requests.view(sub["code"], sub["token"])["deadlines"]["explain_by"] == "2026-12-07T23:59:59+07:00"
    with pytest.raises(Forbidden):
        supervision.suspend(sub["code"], people["chuyenvien"], "unable")
    supervision.suspend(sub["code"], people["lanhdao"], "unable", "Người yêu cầu nằm viện")
    assert requests.view(sub["code"], sub["token"])["status"] == "suspended"
    with pytest.raises(Conflict):
        do(sub["code"], "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    fixed_clock.advance(days=20)  # 10/12: the old deadline passed while suspended
    assert timers.run_due() == 0
    result = supervision.resume(sub["code"], people["lanhdao"])
    # 20 days stood still: 7/12 + 20 = 27/12 (Sunday) -> 28/12.
    assert result["deadlines"]["explain_by"] == "2026-12-28T23:59:59+07:00"
    assert result["status"] == "in_progress" and not result["overdue"]
    assert timers.run_due() == 0
    assert events(sub["code"], sub["token"])[-2:] == ["suspended", "resumed"]
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == sub["code"])).scalar_one()
        jobs = session.execute(select(Job).where(Job.request_id == request.id, Job.status == "waiting")).scalars().all()
        assert jobs and all(j.due_at.isoformat() == "2026-12-28T16:59:59+00:00" for j in jobs)
    fixed_clock.advance(days=19)
    assert timers.run_due() == 1
    assert supervision.list_escalations(people["thanhtra"])["items"][0]["step"] == "explain"


def test_withdraw_terminates_and_clears_the_work(world, people):
    sub = submit()
    to_explain(sub["code"], people)
    result = requests.withdraw(sub["code"], sub["token"], "Đã được giải quyết")
    assert result["status"] == "terminated" and result["closed"]
    assert tasks.list_tasks(people["chuyenvien"], scope="mine")["total"] == 0
    with pytest.raises(Conflict):
        requests.withdraw(sub["code"], sub["token"])
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(Job).where(Job.status == "waiting")).scalar_one() == 0


def test_wrong_token_and_unknown_code_look_the_same(world):
    sub = submit()
    with pytest.raises(NotFound):
        requests.view(sub["code"], "wrong")
    with pytest.raises(NotFound):
        requests.view("GT-2026-999999", sub["token"])


def test_permissions_and_double_completion(world, people):
    sub = submit()
    receive = task_id(sub["code"], "receive", people["tiepnhan"])
    with pytest.raises(Forbidden):
        tasks.complete(receive, {"decision": "accept"}, people["chuyenvien2"])
    tasks.claim(receive, people["tiepnhan"])
    colleague = Actor("tiepnhan2", "", {"reception": frozenset({"MX"})})
    with pytest.raises(Conflict):
        tasks.claim(receive, colleague)
    with pytest.raises(Conflict):
        tasks.complete(receive, {"decision": "accept"}, colleague)
    tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    with pytest.raises(Conflict):
        tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    assign = task_id(sub["code"], "assign", people["lanhdao"])
    with pytest.raises(ValidationFailed) as caught:
        tasks.complete(assign, {"assignee": "chuyenvien2"}, people["lanhdao"])  # another ward's official
    assert "assignee" in caught.value.fields
    tasks.complete(assign, {"assignee": "chuyenvien"}, people["lanhdao"])
    explain = task_id(sub["code"], "explain", people["chuyenvien"])
    with pytest.raises(Forbidden):
        tasks.claim(explain, people["chuyenvien2"])
    with pytest.raises(Forbidden):
        tasks.get_task(explain, people["chuyenvien2"])
    with pytest.raises(NotFound):
        tasks.get_task("no-such-task", people["chuyenvien"])
    with pytest.raises(Forbidden):
        tasks.list_tasks(people["chuyenvien"], scope="all")


def _snapshot(session):
    return {
        "requests": [tuple(r) for r in session.execute(select(Request.status, Request.current_step, Request.deadlines))],
        "states": [r.state for r in session.execute(select(WorkflowState)).scalars()],
        "tasks": sorted((t.id, t.status) for t in session.execute(select(Task)).scalars()),
        "jobs": sorted((j.id, j.status) for j in session.execute(select(Job)).scalars()),
        "audit": session.execute(select(func.count()).select_from(AuditEvent)).scalar_one(),
        "escalations": session.execute(select(func.count()).select_from(Escalation)).scalar_one(),
    }


def test_a_crash_after_the_workflow_ran_leaves_the_database_as_before(world, people, monkeypatch):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    assign = task_id(sub["code"], "assign", people["lanhdao"])
    with db.read_only() as session:
        before = _snapshot(session)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    # apply_status_effects runs after the workflow moved and its rows were written, before commit.
    monkeypatch.setattr("giaitrinh.engine.services._common.apply_status_effects", crash)
    with pytest.raises(RuntimeError):
        tasks.complete(assign, {"assignee": "chuyenvien"}, people["lanhdao"])
    with db.read_only() as session:
        assert _snapshot(session) == before
    monkeypatch.undo()
    tasks.complete(assign, {"assignee": "chuyenvien"}, people["lanhdao"])
    assert requests.view(sub["code"], sub["token"])["current_step"] == "explain"


def test_a_timer_that_keeps_failing_becomes_an_incident(world, people, fixed_clock, monkeypatch):
    sub = submit()
    monkeypatch.setattr("giaitrinh.engine.runtime.fire_timer", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    fixed_clock.advance(days=11)
    for _ in range(timers.MAX_ATTEMPTS):
        timers.run_due()
        fixed_clock.advance(hours=2)  # past the back-off
    with db.read_only() as session:
        jobs = session.execute(select(Job).where(Job.kind == "timer")).scalars().all()
        assert [j.status for j in jobs] == ["incident"] and "boom" in jobs[0].last_error
        job_id = jobs[0].id
    monkeypatch.undo()
    timers.retry_incident(job_id, "thanhtra")
    assert timers.run_due() == 1
    assert requests.view(sub["code"], sub["token"])["overdue"]


def test_demo_seed_is_alive_and_idempotent(database):
    from giaitrinh import demo

    assert demo.seed() == len(demo.PLAN)
    assert demo.seed() == 0
    with db.read_only() as session:
        statuses = {s for (s,) in session.execute(select(Request.status))}
        assert {"received", "needs_info", "refused", "redirected", "accepted", "in_progress", "dialogue",
                "explained", "published", "terminated", "suspended"} <= statuses
        assert session.execute(select(func.count()).select_from(Request).where(Request.overdue.is_(True))).scalar_one() >= 3
        assert session.execute(select(func.count()).select_from(Escalation)).scalar_one() >= 3
        assert audit.verify(session).ok
