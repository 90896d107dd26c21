"""Demo data: two wards, the demo accounts of API.md and about 30 requests at every stage.

Requests are created through the same services an official uses, with the clock
set back in time, so their histories, deadlines and escalations are real. Running
it twice adds nothing.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from sqlalchemy import func, select

from .config import PROCESSES_DIR
from .engine import accounts, clock, db, timers
from .engine.models import Definition, Membership, Request, Unit, User
from .engine.services import definitions, requests, supervision, tasks

# The city above both wards (parents first): its supervisor sees the wards' figures rolled up.
UNITS = [
    ("TP", "UBND thành phố", None),
    ("MX", "UBND phường Mỹ Xuyên", "TP"),
    ("GM", "UBND phường Gia Minh", "TP"),
]

USERS = [
    ("tiepnhan", "Trần Thị Tiếp Nhận (Văn phòng HĐND-UBND)", [("reception", "MX")]),
    ("lanhdao", "Lê Văn Lãnh Đạo (Chủ tịch UBND phường)", [("head", "MX")]),
    ("chuyenvien", "Nguyễn Văn Chuyên (Phòng Văn hóa - Xã hội)", [("official", "MX")]),
    ("chuyenvien2", "Phạm Thị Viên (UBND phường Gia Minh)", [("official", "GM")]),
    ("thanhtra", "Hoàng Văn Thanh (Thanh tra)", [("supervisor", "MX")]),
    ("thanhtratp", "Vũ Thị Thanh Tra (Thanh tra thành phố)", [("supervisor", "TP")]),
    ("thietke", "Đỗ Thị Thiết Kế (Quản trị quy trình)", [("designer", None)]),
    ("admin", "Quản trị hệ thống", [("admin", None)]),
    ("ketnoi", "Kết nối CSDL quốc gia về trách nhiệm giải trình", [("exporter", None)]),
]

SUBJECTS = [
    ("Giải trình về việc thu hồi đất tại tổ dân phố 3",
     "Đề nghị UBND phường giải trình căn cứ pháp lý của quyết định thu hồi đất đối với thửa đất số 125, tờ bản đồ số 7."),
    ("Giải trình về việc cấp phép xây dựng công trình trên đường Lê Lợi",
     "Công trình xây dựng tại số 45 đường Lê Lợi lấn chiếm vỉa hè, đề nghị giải trình việc cấp phép."),
    ("Giải trình về việc chậm chi trả tiền hỗ trợ tái định cư",
     "Gia đình tôi chưa nhận được tiền hỗ trợ tái định cư theo phương án đã được phê duyệt từ tháng 6."),
    ("Giải trình về việc xử phạt vi phạm hành chính trật tự đô thị",
     "Đề nghị giải trình căn cứ xử phạt đối với hộ kinh doanh tại chợ Mỹ Xuyên ngày 12/10."),
    ("Giải trình về việc điều chỉnh quy hoạch khu dân cư phía Bắc",
     "Việc điều chỉnh quy hoạch khu dân cư phía Bắc ảnh hưởng đến quyền sử dụng đất của các hộ dân."),
    ("Giải trình về mức thu phí vệ sinh môi trường",
     "Mức thu phí vệ sinh môi trường năm nay tăng gấp đôi, đề nghị giải trình căn cứ."),
    ("Giải trình về việc từ chối xác nhận hồ sơ hộ nghèo",
     "Hồ sơ đề nghị công nhận hộ nghèo của gia đình tôi bị từ chối mà không nêu lý do."),
    ("Giải trình về tiến độ sửa chữa trường mầm non Hoa Sen",
     "Công trình sửa chữa trường mầm non Hoa Sen chậm tiến độ hơn 6 tháng."),
]

NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường", "Phạm Thu Dung", "Võ Minh Đức",
         "Đặng Thị Hạnh", "Bùi Quốc Khánh", "Công ty TNHH Thương mại Sông Hồng"]

# (final stage, days ago it was received)
PLAN = [
    ("received", 1), ("received", 2), ("received", 9), ("received", 12),
    ("needs_info", 3), ("needs_info", 6),
    ("refused", 20), ("refused", 25), ("redirected", 15),
    ("accepted", 2), ("accepted", 24),
    ("explain", 5), ("explain", 8), ("explain", 28), ("explain", 35),
    ("dialogue", 10), ("dialogue", 30),
    ("extended", 22), ("extended", 27),
    ("approve", 12), ("approve", 14),
    ("publish", 16), ("publish", 18),
    ("published", 40), ("published", 45), ("published", 50), ("published", 55), ("published", 60),
    ("withdrawn", 7), ("suspended", 11),
]
ORDER = ["received", "accepted", "explain", "dialogue", "extended", "approve", "publish", "published"]


_DEMO_HASH: str | None = None


def _demo_password_hash() -> str:
    """argon2 is slow on purpose; the demo accounts share one hash of "demo" per process."""
    global _DEMO_HASH
    if _DEMO_HASH is None:
        _DEMO_HASH = accounts.hash_password("demo")
    return _DEMO_HASH


def _setup_accounts() -> None:
    with db.transaction() as session:
        for code, name, parent in UNITS:
            if session.get(Unit, code) is None:
                session.add(Unit(code=code, name=name, parent_code=parent))
        session.flush()
        for username, full_name, roles in USERS:
            user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
            if user is None:
                # An address each, so the demo's /dev/outbox shows officials' mail too.
                user = User(username=username, full_name=full_name, email=f"{username}@example.vn",
                            password_hash=_demo_password_hash(), is_active=True, created_at=clock.now())
                session.add(user)
                session.flush()
                for role, unit in roles:
                    session.add(Membership(user_id=user.id, role=role, unit_code=unit))


def _deploy() -> None:
    with db.read_only() as session:
        deployed = session.execute(select(Definition).where(Definition.status == "deployed")).first()
    if deployed is None:
        designer = accounts.Actor("thietke", "", {"designer": frozenset({accounts.ALL_UNITS})})
        definitions.upload_and_deploy(PROCESSES_DIR / "giai_trinh.bpmn", designer)


def _actor(username: str) -> accounts.Actor:
    with db.read_only() as session:
        return accounts.actor_by_username(session, username)


def _open_task(code: str, step: str, actor: accounts.Actor) -> str:
    found = tasks.list_tasks(actor, scope="unit", request_code=code, step=step)["items"]
    return found[0]["id"]


def _walk(code: str, stage: str, fixed: clock.FixedClock, people: dict, n: int) -> None:
    reception, head, official = people["tiepnhan"], people["lanhdao"], people["chuyenvien"]

    def step(hours: float = 20) -> None:
        fixed.advance(hours=hours)

    if stage == "received":
        return
    if stage == "needs_info":
        step(4)
        tasks.complete(_open_task(code, "receive", reception), {
            "decision": "needs_info", "note": "Đề nghị bổ sung bản sao quyết định bị yêu cầu giải trình."}, reception)
        return
    if stage == "refused":
        step(30)
        ground = ["already_explained", "secret", "conditions_unmet"][n % 3]
        tasks.complete(_open_task(code, "receive", reception), {"decision": "refuse", "ground": ground}, reception)
        return
    if stage == "redirected":
        step(30)
        tasks.complete(_open_task(code, "receive", reception), {
            "decision": "redirect", "redirect_to": "Sở Tài nguyên và Môi trường"}, reception)
        return
    if stage == "withdrawn":
        return
    step(30)
    tasks.complete(_open_task(code, "receive", reception), {"decision": "accept"}, reception)
    if stage == "suspended":
        step(24)
        supervision.suspend(code, head, "unable", "Người yêu cầu đang điều trị dài ngày tại bệnh viện.")
        return
    if stage == "accepted":
        return
    step(20)
    tasks.complete(_open_task(code, "assign", head), {"assignee": "chuyenvien", "note": "Đề nghị xử lý đúng hạn."}, head)
    if stage == "explain":
        return
    step(48)
    if stage == "dialogue":
        tasks.complete(_open_task(code, "explain", official), {
            "explanation": {"legal_basis": "Luật Đất đai 2024", "content": "Dự thảo"}, "needs_dialogue": True}, official)
        return
    if stage == "extended":
        tasks.complete(_open_task(code, "explain", official), {
            "extend": {"days": 10, "reason": "Nội dung phức tạp, cần xác minh hồ sơ địa chính qua nhiều thời kỳ."}}, official)
        return
    if n % 3 == 0:  # some cases had a working session with the requester first (minutes)
        tasks.complete(_open_task(code, "explain", official), {
            "explanation": {"legal_basis": "Luật Đất đai 2024", "content": "Dự thảo"}, "needs_dialogue": True}, official)
        step(24)
        tasks.complete(_open_task(code, "dialogue", official), {
            "minutes": "Hai bên đã trao đổi về hồ sơ; người yêu cầu đã được cung cấp bản sao quyết định và "
                       "thống nhất chờ văn bản giải trình chính thức."}, official)
        step(4)
    tasks.complete(_open_task(code, "explain", official), {"explanation": {
        "legal_basis": "Luật Đất đai 2024; Nghị định 59/2019/NĐ-CP; Quyết định số 12/QĐ-UBND của UBND phường.",
        "content": "UBND phường đã thực hiện đúng trình tự, thủ tục; quyết định được ban hành đúng thẩm quyền. "
                   "Ông/bà có thể liên hệ số 0912 345 678 của bộ phận một cửa để được hướng dẫn thêm."}}, official)
    if stage == "approve":
        return
    step(20)
    tasks.complete(_open_task(code, "approve", head), {"approved": True}, head)
    if stage == "publish":
        return
    step(10)
    tasks.complete(_open_task(code, "publish", reception), {"publish": True}, reception)


def seed(progress: Callable[[], None] | None = None) -> int:
    """Create what is missing; returns the number of requests created."""
    _setup_accounts()
    _deploy()
    with db.read_only() as session:
        existing = session.execute(select(func.count()).select_from(Request)).scalar_one()
    if existing >= len(PLAN):
        if progress:
            for _ in PLAN:
                progress()
        return 0
    people = {u: _actor(u) for u, _, _ in USERS}
    real_clock = clock.get_clock()
    real_now = real_clock.now()
    created = 0
    try:
        for n, (stage, days_ago) in enumerate(PLAN):
            fixed = clock.FixedClock(real_now - timedelta(days=days_ago, hours=n % 5))
            clock.set_clock(fixed)
            subject, content = SUBJECTS[n % len(SUBJECTS)]
            name = NAMES[n % len(NAMES)]
            submitted = requests.submit({
                "requester": {"name": name, "address": f"Số {10 + n} đường Trần Phú, phường Mỹ Xuyên",
                              "phone": f"09{n:02d} 123 4{n:02d}", "email": f"nguoidan{n}@example.vn",
                              "kind": "organisation" if name.startswith("Công ty") else "person"},
                "subject": subject, "content": content, "unit": "MX",
            })
            if stage == "withdrawn":
                fixed.advance(hours=30)
                requests.withdraw(submitted["code"], submitted["token"], "Đã được giải quyết qua tiếp dân.")
            else:
                _walk(submitted["code"], stage, fixed, people, n)
            if stage == "published" and n % 2 == 0:
                fixed.advance(hours=24)
                requests.rate(submitted["code"], submitted["token"], 4 + n % 2, "Giải trình rõ ràng, đúng hạn.")
            # Timers that fell due while this case was being worked fire at their time.
            timers.run_due()
            created += 1
            if progress:
                progress()
    finally:
        clock.set_clock(real_clock)
    timers.run_due()
    # The cases' notices, minutes and explanations, rendered now so the first page view is quick.
    from .engine.services import documents as documents_service
    documents_service.render_pending(limit=10_000)
    return created
