"""Small steps shared by the lifecycle and API tests."""
from giaitrinh.engine.services import requests, tasks

CITIZEN = {
    "requester": {"name": "Nguyễn Văn An", "address": "12 Trần Phú, phường Mỹ Xuyên", "phone": "0912 345 678",
                  "email": "an@example.vn", "kind": "person"},
    "subject": "Giải trình về việc thu hồi đất tại tổ dân phố 3",
    "content": "Đề nghị giải trình căn cứ pháp lý của quyết định thu hồi đất thửa số 125.",
    "unit": "MX",
}

EXPLANATION = {"legal_basis": "Luật Đất đai 2024, Điều 79",
               "content": "Ông Nguyễn Văn An (0912 345 678) đã được thông báo thu hồi đất đúng trình tự."}


def submit(**changes):
    payload = dict(CITIZEN, **changes)
    return requests.submit(payload)


def task_id(code, step, actor):
    items = tasks.list_tasks(actor, scope="unit", request_code=code, step=step)["items"]
    assert items, f"no open {step} task for {code}"
    return items[0]["id"]


def do(code, step, actor, data):
    return tasks.complete(task_id(code, step, actor), data, actor)


def to_explain(code, people):
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    do(code, "assign", people["lanhdao"], {"assignee": "chuyenvien"})


def refreshes_while(action) -> int:
    """How many times the facts were recomputed from the rows by a statement of their own."""
    from giaitrinh.engine import attention, plainsql

    seen = []
    run = plainsql.execute

    def record(connection, statement, params):
        if statement is attention._REFRESH:
            seen.append(params)
        return run(connection, statement, params)

    plainsql.execute = record
    try:
        action()
    finally:
        plainsql.execute = run
    return len(seen)
