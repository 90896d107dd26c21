"""Supervisors' console: stuck reasons, filters, saved filters, actions on a case, bulk, heatmap, dashboard."""
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from giaitrinh import demo
from giaitrinh.engine import audit, clock, db, timers
from giaitrinh.engine.accounts import actor_by_username, hash_password
from giaitrinh.engine.errors import Conflict, Forbidden, NotFound, ValidationFailed
from giaitrinh.engine.models import AuditEvent, Job, Membership, Request, Task, User
from giaitrinh.engine.services import requests, supervision, tasks

from .helpers import EXPLANATION, do, submit, task_id, to_explain


def make_user(username, role, unit):
    with db.transaction() as session:
        user = User(username=username, full_name=username, password_hash=hash_password("x"), is_active=True,
                    created_at=clock.now())
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, role=role, unit_code=unit))
    with db.read_only() as session:
        return actor_by_username(session, username)


def reasons(code, actor):
    return [r["code"] for r in supervision.stuck_reasons(code, actor)]


def last_event(code, action):
    with db.read_only() as session:
        request_id = session.execute(select(Request.id).where(Request.code == code)).scalar_one()
        e = session.execute(select(AuditEvent).where(AuditEvent.request_id == request_id,
                                                     AuditEvent.action == action)
                            .order_by(AuditEvent.id.desc())).scalars().first()
        return e and SimpleNamespace(actor=e.actor, note=e.note, before=e.before, after=e.after, public=e.public)


def make_incident(monkeypatch, fixed_clock):
    monkeypatch.setattr("giaitrinh.engine.runtime.fire_timer",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    for _ in range(timers.MAX_ATTEMPTS):
        timers.run_due()
        fixed_clock.advance(hours=2)  # past the back-off
    monkeypatch.undo()


# -- stuck, computed ------------------------------------------------------------------------


def test_an_overdue_task_is_stuck_and_says_so(world, people, fixed_clock):
    late = submit()["code"]
    boss = people["thanhtra"]
    assert reasons(late, boss) == []
    fixed_clock.set(clock.parse_instant("2026-11-27T08:00:00+07:00"))
    fresh = submit()["code"]  # due 04/12: not late
    fixed_clock.set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    timers.run_due()
    do(fresh, "receive", people["tiepnhan"], {"decision": "accept"})
    assert reasons(late, boss) == ["task_overdue"]
    listed = supervision.list_instances(boss, stuck=True)
    assert [i["code"] for i in listed["items"]] == [late]
    assert listed["items"][0]["stuck_reasons"][0]["label"] == supervision.STUCK_REASONS["task_overdue"]
    assert [i["code"] for i in supervision.list_instances(boss, reason="task_overdue")["items"]] == [late]


def test_an_incident_is_stuck_and_the_list_filters_on_it(world, people, fixed_clock, monkeypatch):
    broken, other = submit()["code"], submit()["code"]
    fixed_clock.advance(days=11)
    do(other, "receive", people["tiepnhan"], {"decision": "accept"})
    make_incident(monkeypatch, fixed_clock)
    assert "incident" in reasons(broken, people["thanhtra"])
    # On the diagram: the failed timer itself and the task it guards.
    assert set(supervision.diagram(broken, people["thanhtra"])["incidents"]) == {"receive_deadline", "receive"}
    assert [i["code"] for i in supervision.list_instances(people["thanhtra"], incident=True)["items"]] == [broken]
    assert broken not in [i["code"] for i in supervision.list_instances(people["thanhtra"], incident=False)["items"]]


def test_a_case_with_nothing_waiting_is_stuck(world, people, fixed_clock):
    code = submit()["code"]
    # The rows say nothing waits any more (a task lost, its deadline gone): nothing will move it.
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        for t in session.execute(select(Task).where(Task.request_id == request.id)).scalars():
            t.status = "cancelled"
        for j in session.execute(select(Job).where(Job.request_id == request.id)).scalars():
            j.status = "done"
    assert reasons(code, people["thanhtra"]) == ["no_work"]


def test_no_activity_for_n_working_days_is_stuck_and_n_is_the_administrators(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)  # Friday 20/11: last activity
    # Monday 30/11: 23, 25, 26, 27, 30 are five working days (24/11 is a holiday).
    fixed_clock.set(clock.parse_instant("2026-11-30T10:00:00+07:00"))
    assert reasons(code, people["thanhtra"]) == ["inactive"]
    label = supervision.stuck_reasons(code, people["thanhtra"])[0]["label"]
    assert "5 ngày làm việc" in label
    with pytest.raises(Forbidden):
        supervision.set_inactive_days(people["thanhtra"], 6)
    with pytest.raises(ValidationFailed) as bad:
        supervision.set_inactive_days(people["admin"], 0)
    assert "days" in bad.value.fields
    supervision.set_inactive_days(people["admin"], 6)
    assert reasons(code, people["thanhtra"]) == []
    fixed_clock.set(clock.parse_instant("2026-12-01T10:00:00+07:00"))
    assert reasons(code, people["thanhtra"]) == ["inactive"]
    with db.read_only() as session:
        changed = session.execute(select(AuditEvent).where(AuditEvent.action == "setting_changed")).scalar_one()
        assert changed.after == {"stuck_inactive_working_days": 6} and changed.actor == "admin"


def test_a_suspended_case_is_never_stuck(world, people, fixed_clock):
    code = submit()["code"]
    supervision.suspend(code, people["lanhdao"], "unable", "Người yêu cầu nằm viện")
    fixed_clock.set(clock.parse_instant("2026-12-10T10:00:00+07:00"))
    assert reasons(code, people["thanhtra"]) == []


# -- filters -------------------------------------------------------------------------------------


def test_filters_by_step_assignee_and_received_between(world, people, fixed_clock):
    first = submit()["code"]
    fixed_clock.advance(days=3)  # Monday 23/11
    second = submit()["code"]
    to_explain(second, people)
    boss = people["thanhtra"]
    codes = lambda **f: [i["code"] for i in supervision.list_instances(boss, **f)["items"]]
    assert codes(step="explain") == [second]
    assert codes(step="receive") == [first]
    assert codes(assignee="chuyenvien") == [second]
    assert codes(received_from="2026-11-20", received_to="2026-11-20") == [first]
    assert codes(received_from="2026-11-21") == [second]
    with pytest.raises(ValidationFailed) as bad:
        supervision.list_instances(boss, received_from="20/11/2026")
    assert "received_from" in bad.value.fields
    with pytest.raises(ValidationFailed) as bad:
        supervision.list_instances(boss, received_from="2026-11-22", received_to="2026-11-21")
    assert "received_to" in bad.value.fields
    with pytest.raises(ValidationFailed) as bad:
        supervision.parse_filter({"reason": "bored"})
    assert "reason" in bad.value.fields
    with pytest.raises(Forbidden):
        supervision.list_instances(boss, unit="GM")


def test_saved_filters_are_shared_with_a_role_and_results_stay_in_the_unit(world, people, fixed_clock):
    mx = submit()["code"]
    gm = submit(unit="GM")["code"]
    head_gm = make_user("lanhdao_gm", "head", "GM")
    shared = supervision.save_filter(people["thanhtra"], "Chưa thụ lý", {"step": "receive"}, shared_with_role="head")
    mine = supervision.save_filter(people["thanhtra"], "Của tôi", {"overdue": "true"})
    only_mx = supervision.save_filter(people["thanhtra"], "MX", {"unit": "MX"}, shared_with_role="head")
    assert mine["params"] == {"overdue": True}
    assert {f["name"] for f in supervision.list_filters(people["thanhtra"])} == {"Chưa thụ lý", "Của tôi", "MX"}
    assert {f["name"] for f in supervision.list_filters(people["lanhdao"])} == {"Chưa thụ lý", "MX"}
    # A head of GM sees the filter shared with heads, but not the one about MX, and gets GM's cases.
    assert {f["name"] for f in supervision.list_filters(head_gm)} == {"Chưa thụ lý"}
    params = supervision.get_filter(head_gm, shared["id"])["params"]
    assert [i["code"] for i in supervision.list_instances(head_gm, **params)["items"]] == [gm]
    assert [i["code"] for i in supervision.list_instances(people["lanhdao"], **params)["items"]] == [mx]
    with pytest.raises(NotFound):
        supervision.get_filter(head_gm, only_mx["id"])
    with pytest.raises(Forbidden):
        supervision.delete_filter(people["lanhdao"], shared["id"])
    with pytest.raises(Forbidden):
        supervision.list_filters(people["chuyenvien"])
    with pytest.raises(Forbidden):
        supervision.save_filter(people["thanhtra"], "GM", {"unit": "GM"})
    with pytest.raises(ValidationFailed) as bad:
        supervision.save_filter(people["thanhtra"], "", {"step": "receive"}, shared_with_role="mayor")
    assert set(bad.value.fields) == {"name", "shared_with_role"}
    supervision.delete_filter(people["thanhtra"], shared["id"])
    assert {f["name"] for f in supervision.list_filters(people["lanhdao"])} == {"MX"}


# -- actions ---------------------------------------------------------------------------------------


def test_reassign_needs_a_reason_the_right_role_and_unit(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)
    other = make_user("chuyenvien3", "official", "MX")
    head_gm = make_user("lanhdao_gm", "head", "GM")
    with pytest.raises(ValidationFailed) as bad:
        supervision.reassign(code, people["thanhtra"], "chuyenvien3", "")
    assert "note" in bad.value.fields
    with pytest.raises(ValidationFailed) as bad:
        supervision.reassign(code, people["thanhtra"], "chuyenvien2", "Chuyển người khác")
    assert "assignee" in bad.value.fields  # an official of GM
    with pytest.raises(Forbidden):
        supervision.reassign(code, head_gm, "chuyenvien3", "Chuyển người khác")
    with pytest.raises(Forbidden):
        supervision.reassign(code, people["chuyenvien"], "chuyenvien3", "Tự chuyển")
    result = supervision.reassign(code, people["thanhtra"], "chuyenvien3", "Chuyên viên cũ nghỉ phép")
    assert result["assignee"] == "chuyenvien3" and result["step"] == "explain"
    event = last_event(code, "reassigned")
    assert (event.actor, event.note) == ("thanhtra", "Chuyên viên cũ nghỉ phép")
    assert event.before["assignee"] == "chuyenvien" and event.after["assignee"] == "chuyenvien3"
    assert [t["request_code"] for t in tasks.list_tasks(other, scope="mine")["items"]] == [code]
    assert tasks.list_tasks(people["chuyenvien"], scope="mine")["items"] == []
    assert requests.view(code, None, people["thanhtra"])["status"] != "suspended"
    from giaitrinh.engine.services import notifications as notification_service
    [told] = notification_service.list_for(other)["items"]
    assert told["kind"] == "assigned" and "Chuyên viên cũ nghỉ phép" in told["body"]
    # The new assignee can complete it; a returned draft comes back to them too.
    do(code, "explain", other, {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": False, "note": "Bổ sung căn cứ"})
    assert [t["step"] for t in tasks.list_tasks(other, scope="mine")["items"]] == ["explain"]


def test_an_added_candidate_sees_and_takes_the_task(world, people, fixed_clock):
    code = submit()["code"]
    helper = make_user("tiepnhan2", "official", "MX")  # not a reception officer
    assert tasks.list_tasks(helper, scope="unit", request_code=code)["items"] == []
    supervision.add_candidate(code, people["thanhtra"], "tiepnhan2", "Hỗ trợ tiếp nhận trong đợt cao điểm")
    found = tasks.list_tasks(helper, scope="unit", request_code=code)["items"]
    assert [t["step"] for t in found] == ["receive"]
    with pytest.raises(Conflict):
        supervision.add_candidate(code, people["thanhtra"], "tiepnhan2", "Lần nữa")
    with pytest.raises(ValidationFailed):
        supervision.add_candidate(code, people["thanhtra"], "chuyenvien2", "Người đơn vị khác")
    tasks.complete(found[0]["id"], {"decision": "accept"}, helper)
    assert requests.view(code, None, people["thanhtra"])["status"] == "accepted"
    assert last_event(code, "candidate_added").after["candidate"] == "tiepnhan2"


def test_an_urge_reaches_the_assignee_on_the_task(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)
    with pytest.raises(ValidationFailed):
        supervision.urge(code, people["thanhtra"], None)
    result = supervision.urge(code, people["thanhtra"], "Đề nghị hoàn thành trước thứ Sáu")
    assert result["to"] == "chuyenvien"
    explain = task_id(code, "explain", people["chuyenvien"])
    shown = tasks.get_task(explain, people["chuyenvien"])["urges"]
    assert [(u["by"], u["note"]) for u in shown] == [("thanhtra", "Đề nghị hoàn thành trước thứ Sáu")]
    assert last_event(code, "urged").after == {"task": explain, "to": "chuyenvien"}
    # ...and reaches the assignee's bell (and mailbox) in the same transaction.
    from giaitrinh.engine.services import notifications as notification_service
    notices = notification_service.list_for(people["chuyenvien"])["items"]
    assert notices[0]["kind"] == "urged" and "Đề nghị hoàn thành trước thứ Sáu" in notices[0]["body"]
    assert not [n for n in notification_service.list_for(people["chuyenvien2"])["items"] if n["kind"] == "urged"]


def test_suspension_pauses_the_deadline_clock(world, people, fixed_clock):
    code = submit()["code"]
    supervision.suspend(code, people["thanhtra"], "unable", "Ốm")
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        assert {j.status for j in session.execute(select(Job).where(Job.request_id == request.id)).scalars()} == {"paused"}
    fixed_clock.set(clock.parse_instant("2026-12-03T09:00:00+07:00"))
    assert timers.run_due() == 0  # the deadline of 30/11 does not fire while suspended
    summary = supervision.resume(code, people["thanhtra"], "Đã khỏi")
    assert summary["deadlines"]["acknowledge_by"] > "2026-11-30T23:59:59+07:00" and not summary["overdue"]


def test_terminate_with_its_legal_ground(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)
    with pytest.raises(ValidationFailed) as bad:
        supervision.terminate(code, people["thanhtra"], "bored", "x y z")
    assert "ground" in bad.value.fields
    with pytest.raises(Forbidden):
        supervision.terminate(code, people["chuyenvien"], "withdrawn", "Người yêu cầu rút")
    result = supervision.terminate(code, people["thanhtra"], "no_successor", "Tổ chức đã giải thể, không có người kế thừa")
    assert result["status"] == "terminated" and result["closed"]
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        assert session.execute(select(Job).where(Job.request_id == request.id, Job.status == "waiting")).first() is None
        assert session.execute(select(Task).where(Task.request_id == request.id, Task.status == "open")).first() is None
    event = last_event(code, "terminated")
    assert event.public and supervision.TERMINATION_GROUNDS["no_successor"] in event.note
    with pytest.raises(Conflict):
        supervision.terminate(code, people["thanhtra"], "withdrawn", "Lần nữa")


def test_an_administrator_moves_the_token_back_and_the_inbox_shows_it(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION, "extend": {"days": 5, "reason": "Phức tạp"}})
    deadline = requests.view(code, None, people["thanhtra"])["deadlines"]["explain_by"]
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    assert [t["step"] for t in tasks.list_tasks(people["lanhdao"], scope="unit", request_code=code)["items"]] == ["approve"]
    with pytest.raises(Forbidden):
        supervision.move_token(code, people["thanhtra"], "explain", "Trả lại dự thảo")
    with pytest.raises(ValidationFailed) as bad:
        supervision.move_token(code, people["admin"], "publish", "Chuyển tới công khai")
    assert "to" in bad.value.fields  # never passed there
    with pytest.raises(ValidationFailed):
        supervision.move_token(code, people["admin"], "nowhere", "Không tồn tại")
    assert set(supervision.move_targets(code, people["admin"])) == {"receive", "assign", "explain"}
    result = supervision.move_token(code, people["admin"], "explain", "Dự thảo gửi nhầm, trả lại chuyên viên")
    assert result["current_step"] == "explain"
    assert result["deadlines"]["explain_by"] == deadline  # the extended deadline stays
    mine = tasks.list_tasks(people["chuyenvien"], scope="mine")["items"]
    assert [(t["request_code"], t["step"]) for t in mine] == [(code, "explain")]
    assert tasks.list_tasks(people["lanhdao"], scope="unit", request_code=code)["items"] == []
    event = last_event(code, "token_moved")
    assert event.before["open_steps"] == ["approve"] and event.after["step"] == "explain"
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        waiting = session.execute(select(Job).where(Job.request_id == request.id, Job.status == "waiting")).scalars().all()
        assert [j.step for j in waiting] == ["explain"]
        assert waiting[0].due_at == clock.parse_instant(deadline)
        assert audit.verify(session).ok
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    assert requests.view(code, None, people["thanhtra"])["status"] == "explained"


def test_bulk_urge_goes_case_by_case(world, people, fixed_clock):
    ok1, ok2, closed = submit()["code"], submit()["code"], submit()["code"]
    gm = submit(unit="GM")["code"]
    do(closed, "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    result = supervision.bulk(people["thanhtra"], "urge", [ok1, closed, gm, ok2, "GT-1999-000001"], "Khẩn trương")
    outcome = {r["code"]: (r["ok"], r.get("status")) for r in result["results"]}
    assert outcome == {ok1: (True, None), closed: (False, 409), gm: (False, 403), ok2: (True, None),
                       "GT-1999-000001": (False, 404)}
    assert (result["succeeded"], result["failed"]) == (2, 3)
    assert last_event(ok2, "urged").note == "Khẩn trương"
    with pytest.raises(ValidationFailed):
        supervision.bulk(people["thanhtra"], "delete", [ok1], "x y z")
    with pytest.raises(ValidationFailed):
        supervision.bulk(people["thanhtra"], "urge", [], "x y z")


def test_bulk_reassign_and_retry(world, people, fixed_clock, monkeypatch):
    a, b = submit()["code"], submit()["code"]
    to_explain(a, people)
    make_user("chuyenvien3", "official", "MX")
    result = supervision.bulk(people["thanhtra"], "reassign", [a, b], "Cân đối công việc", assignee="chuyenvien3")
    # b waits at reception: an official cannot take a reception officer's task.
    assert [(r["code"], r["ok"]) for r in result["results"]] == [(a, True), (b, False)]
    fixed_clock.advance(days=11)
    make_incident(monkeypatch, fixed_clock)
    retried = supervision.bulk(people["thanhtra"], "retry", [b, a], "Đã sửa máy chủ")
    assert [(r["code"], r["ok"]) for r in retried["results"]] == [(b, True), (a, False)]
    assert timers.run_due() >= 1


# -- the diagram, the heatmap and the dashboard -----------------------------------------------------


def test_the_diagram_marks_the_path_the_current_task_and_overdue(world, people, fixed_clock):
    code = submit()["code"]
    to_explain(code, people)
    fixed_clock.set(clock.parse_instant("2026-12-08T09:00:00+07:00"))
    timers.run_due()
    shown = supervision.diagram(code, people["thanhtra"])
    assert "<bpmn:definitions" in shown["xml"]
    assert {"start", "receive", "assign", "accept"} <= set(shown["completed"])
    assert "explain" in shown["active"] and "explain" not in shown["completed"]
    assert "explain" in shown["overdue"] and shown["incidents"] == []
    with pytest.raises(Forbidden):
        supervision.diagram(code, people["chuyenvien2"])
    trail = supervision.trail(code, people["thanhtra"])
    assigned = next(e for e in trail if e["action"] == "task_completed" and e["step"] == "assign")
    assert assigned["actor"] == "lanhdao" and any(c["field"] == "status" for c in assigned["changes"])


def test_the_heatmap_counts_per_element(world, people, fixed_clock, monkeypatch):
    a, b, c = submit()["code"], submit()["code"], submit()["code"]
    to_explain(c, people)
    fixed_clock.advance(days=11)  # the acknowledgement deadline of a and b has passed
    make_incident(monkeypatch, fixed_clock)
    nodes = supervision.heatmap(people["thanhtra"])["nodes"]
    assert nodes["receive"]["open"] == 2 and nodes["receive"]["overdue"] == 2
    assert nodes["receive"]["incidents"] == 2  # both acknowledgement timers failed
    assert nodes["explain"] == {"open": 1, "overdue": 0, "incidents": 0}
    assert supervision.heatmap(people["thanhtra"], unit="MX")["nodes"] == nodes
    with pytest.raises(Forbidden):
        supervision.heatmap(people["thanhtra"], unit="GM")


def test_the_dashboard_per_unit_and_rolled_up(world, people, fixed_clock):
    from giaitrinh.engine.models import Unit
    with db.transaction() as session:
        session.add(Unit(code="MX1", name="Tổ dân phố 1", parent_code="MX"))
    make_user("lanhdao_mx1", "head", "MX1")
    a, b = submit()["code"], submit(unit="MX1")["code"]
    late = submit()["code"]
    to_explain(a, people)
    do(a, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    fixed_clock.advance(days=3)  # Monday 23/11
    do(a, "approve", people["lanhdao"], {"approved": True})
    requests_rated = a
    fixed_clock.set(clock.parse_instant("2026-11-27T10:00:00+07:00"))  # 2 working days before 01/12
    head = demo._actor("lanhdao")  # now also head of MX1, the unit below MX
    board = supervision.dashboard(head)
    rows = {r["unit"]: r for r in board["units"]}
    assert board["month"] == "2026-11" and set(rows) == {"MX", "MX1"}
    # Explained but not yet published is still open (it waits for publication).
    assert rows["MX"]["own"]["open"] == 2 and rows["MX1"]["own"]["open"] == 1
    assert rows["MX"]["rolled_up"]["open"] == 3 and rows["MX"]["children"] == ["MX1"]
    assert rows["MX"]["own"]["explained"] == 1 and rows["MX"]["own"]["on_time_rate"] == 1.0
    assert rows["MX"]["own"]["avg_working_days_to_acknowledge"] == 0.0
    assert rows["MX"]["own"]["avg_working_days_to_explain"] == 1.0  # Fri 20 -> Mon 23
    # The acknowledgement deadline (30/11) is within 3 working days of Fri 27/11.
    assert rows["MX"]["own"]["due_soon"] == 1 and rows["MX"]["rolled_up"]["due_soon"] == 2
    fixed_clock.set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    timers.run_due()
    board = {r["unit"]: r for r in supervision.dashboard(head)["units"]}
    assert board["MX"]["rolled_up"]["overdue"] == 2 and board["MX"]["rolled_up"]["escalated"] == 2
    assert board["MX"]["own"]["explained"] == 0  # a new month
    only = supervision.dashboard(make_user("tt_mx1", "supervisor", "MX1"))
    assert [r["unit"] for r in only["units"]] == ["MX1"]
    assert requests_rated and late and b


def test_the_dashboard_averages_count_local_working_days(world, people, fixed_clock):
    """The month's averages count working days between local dates: an acknowledgement at 06:30 on
    a Monday in Hà Nội is still Sunday in UTC, and must count as Monday."""
    from datetime import date

    from giaitrinh.engine import calendar as cal
    fixed_clock.set(clock.parse_instant("2026-11-20T09:00:00+07:00"))  # Friday
    early = submit()["code"]
    fixed_clock.set(clock.parse_instant("2026-11-23T06:30:00+07:00"))  # Monday, 23:30 UTC on Sunday
    do(early, "receive", people["tiepnhan"], {"decision": "accept"})
    fixed_clock.set(clock.parse_instant("2026-11-23T10:00:00+07:00"))
    later = submit()["code"]
    fixed_clock.set(clock.parse_instant("2026-11-25T16:00:00+07:00"))  # Wednesday
    do(later, "receive", people["tiepnhan"], {"decision": "accept"})
    do(early, "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    do(early, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    fixed_clock.set(clock.parse_instant("2026-11-27T10:00:00+07:00"))  # Friday
    do(early, "approve", people["lanhdao"], {"approved": True})
    own = {r["unit"]: r for r in supervision.dashboard(people["thanhtra"])["units"]}["MX"]["own"]
    with db.read_only() as session:
        days = cal.load_calendar(session).working_days_between
    fri, sun, mon, wed, next_fri = (date(2026, 11, d) for d in (20, 22, 23, 25, 27))
    assert own["avg_working_days_to_acknowledge"] == round((days(fri, mon) + days(mon, wed)) / 2, 1)
    assert own["avg_working_days_to_explain"] == days(mon, next_fri)
    # What UTC dates would give instead: the test tells the two apart.
    assert (days(fri, sun), days(sun, next_fri)) != (days(fri, mon), days(mon, next_fri))


def test_the_all_count_keeps_the_settled_closed_cases_and_counts_the_recent_ones(world, people, fixed_clock):
    boss = people["thanhtra"]
    unit_boss = make_user("tt_mx_only", "supervisor", "MX")

    def agree():
        for who, unit in ((boss, None), (boss, "MX"), (unit_boss, None)):
            page = supervision.overview(who, unit=unit, show="all")
            assert page["counts"]["all"] == supervision.count_instances(who, unit=unit) \
                == page["cases"]["total"] == supervision.count_all(who, unit=unit)
            assert page["counts"]["open"] == supervision.count_instances(who, unit=unit, closed=False)
        return supervision.count_all(boss)

    codes = [submit()["code"] for _ in range(4)]
    assert agree() == 4
    do(codes[0], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})  # closed now
    assert agree() == 4
    fixed_clock.advance(hours=2)  # that closing is settled: kept, no longer counted each time
    do(codes[1], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    assert agree() == 4
    supervision.terminate(codes[2], boss, "withdrawn", "Người yêu cầu rút yêu cầu")
    fixed_clock.advance(days=3)  # the kept instant falls a day behind and moves up
    assert agree() == 4
    with db.transaction() as session:  # a case closed by hand, without a closing instant
        request = session.execute(select(Request).where(Request.code == codes[3])).scalar_one()
        request.closed, request.status, request.closed_at = True, "terminated", None
    fixed_clock.advance(hours=3)
    assert agree() == 4
    submit()
    fixed_clock.set(fixed_clock.now() - timedelta(days=30))  # the clock went back: counted afresh
    assert agree() == 5
