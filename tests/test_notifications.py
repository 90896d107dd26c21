"""Notifications: a real SMTP server (aiosmtpd) on a free local port receives what the lifecycle sends;
the outbox survives a mail server that is down; officials' in-app notices stay inside their unit."""
from __future__ import annotations

import re
import socket
from datetime import timedelta
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from urllib.parse import urlparse, parse_qs

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from giaitrinh import demo
from giaitrinh.config import ConfigError, load_settings
from giaitrinh.engine import audit, db, mail, notifications, timers
from giaitrinh.engine.errors import Forbidden, ValidationFailed
from giaitrinh.engine.models import AuditEvent, Membership, OutboxMessage, Request, Unit, User
from giaitrinh.engine.services import _common, requests, retention, supervision
from giaitrinh.engine.services import notifications as notification_service

from .helpers import CITIZEN, EXPLANATION, do, submit, to_explain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the local SMTP server received."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self, to: str | None = None):
        out = [message_from_bytes(e.original_content, policy=policy.default) for e in self.envelopes
               if to is None or to in e.rcpt_tos]
        return out

    def subjects(self, to: str | None = None):
        return [str(m["Subject"]) for m in self.messages(to)]


class SmtpServer:
    def __init__(self, port: int):
        self.port = port
        self.inbox = Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    """A real SMTP server on a free port, and the engine's mail pointed at it."""
    server = SmtpServer(free_port())
    server.start()
    previous = mail.config()
    mail.configure(mail.MailConfig(backend="smtp", host="127.0.0.1", port=server.port, timeout=5,
                                   sender="GiảiTrình phường Mỹ Xuyên <giaitrinh@myxuyen.gov.vn>",
                                   public_url="http://giaitrinh.test"))
    yield server
    server.stop()
    mail.configure(previous)


@pytest.fixture
def smtp_down():
    """The engine's mail pointed at a port where nothing listens (yet)."""
    server = SmtpServer(free_port())
    previous = mail.config()
    mail.configure(mail.MailConfig(backend="smtp", host="127.0.0.1", port=server.port, timeout=2,
                                   public_url="http://giaitrinh.test"))
    yield server
    server.stop()
    mail.configure(previous)


def set_email(username: str, email: str) -> None:
    with db.transaction() as session:
        session.execute(update(User).where(User.username == username).values(email=email))


def body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def outbox(**where):
    with db.transaction() as session:  # commits: the rows stay readable afterwards
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        for key, value in where.items():
            query = query.where(getattr(OutboxMessage, key) == value)
        return session.execute(query).scalars().all()


CITIZEN_MAIL = "an@example.vn"


# -- the lifecycle, read from a real mailbox ------------------------------------------------------


def test_the_lifecycle_arrives_by_smtp_with_a_working_tracking_link(world, people, smtp, fixed_clock):
    set_email("chuyenvien", "chuyen@myxuyen.gov.vn")
    sub = submit()
    assert mail.deliver_due() == 1
    [ack] = smtp.inbox.messages(CITIZEN_MAIL)
    # Unicode subject: encoded on the wire, decoded back exactly.
    raw = smtp.inbox.envelopes[0].original_content.decode("ascii")
    assert re.search(r"^Subject: =\?utf-8\?[bq]\?", raw, re.M | re.I) and "Xác nhận" not in raw
    assert str(ack["Subject"]) == f"[{sub['code']}] Xác nhận đã nhận yêu cầu giải trình / " \
                                  "Acknowledgement of your request for explanation"
    assert str(make_header(decode_header(re.search(r"^Subject: (.*(?:\n\s.*)*)", raw, re.M).group(1)))) \
        == str(ack["Subject"])
    assert ack["From"].addresses[0].display_name == "GiảiTrình phường Mỹ Xuyên"
    assert ack["Date"].endswith("+0700")
    assert re.fullmatch(r"<giaitrinh\.\d+\.\d+@myxuyen\.gov\.vn>", ack["Message-ID"])
    assert ack.get_content_charset() == "utf-8"
    text = body(ack)
    assert text.startswith("Kính gửi: Nguyễn Văn An") and "— English —" in text
    assert "30/11/2026" in text  # the acknowledgement deadline of PRODUCT.md's example
    # The link works: its code and token open the case.
    link = re.search(r"http://giaitrinh\.test/yeu-cau/\S+", text).group(0)
    parsed = urlparse(link)
    code, token = parsed.path.rsplit("/", 1)[-1], parse_qs(parsed.query)["token"][0]
    assert code == sub["code"] and token == sub["token"]
    assert requests.view(code, token)["status"] == "received"
    # Once the server accepted it, the plain token is no longer stored.
    [row] = outbox(kind="acknowledgement")
    assert row.status == "sent" and row.secret is None and sub["token"] not in row.body
    assert row.message_id == ack["Message-ID"]

    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept", "note": "Đủ điều kiện"})
    do(sub["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    mail.deliver_due()
    accepted = smtp.inbox.messages(CITIZEN_MAIL)[-1]
    assert "Thông báo thụ lý giải trình" in str(accepted["Subject"])
    assert "07/12/2026" in body(accepted) and "Đủ điều kiện" in body(accepted)
    assert sub["token"] not in body(accepted)  # later notices point to the lookup page
    [assigned] = smtp.inbox.messages("chuyen@myxuyen.gov.vn")
    assert "Được phân công giải trình" in str(assigned["Subject"])
    assert f"http://giaitrinh.test/giam-sat/ho-so/{sub['code']}" in body(assigned)

    do(sub["code"], "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(sub["code"], "approve", people["lanhdao"], {"approved": True})
    mail.deliver_due()
    explanation = smtp.inbox.messages(CITIZEN_MAIL)[-1]
    assert "Văn bản giải trình" in str(explanation["Subject"])
    text = body(explanation)
    assert EXPLANATION["legal_basis"] in text and EXPLANATION["content"] in text
    assert "12 Trần Phú" in text  # the requester's name and address, as the decree requires
    assert smtp.inbox.subjects(CITIZEN_MAIL) == [
        f"[{sub['code']}] Xác nhận đã nhận yêu cầu giải trình / Acknowledgement of your request for explanation",
        f"[{sub['code']}] Thông báo thụ lý giải trình / Notice of acceptance for explanation",
        f"[{sub['code']}] Văn bản giải trình / Explanation",
    ]
    assert all(r.status == "sent" for r in outbox())


def test_every_notice_of_the_decree_reaches_the_citizen(world, people, smtp, fixed_clock):
    refused = submit()
    do(refused["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    redirected = submit()
    do(redirected["code"], "receive", people["tiepnhan"], {"decision": "redirect", "redirect_to": "Sở Xây dựng"})
    incomplete = submit()
    do(incomplete["code"], "receive", people["tiepnhan"], {"decision": "needs_info", "note": "Bản sao quyết định"})
    extended = submit()
    to_explain(extended["code"], people)
    do(extended["code"], "explain", people["chuyenvien"], {"extend": {"days": 10, "reason": "Cần xác minh hồ sơ"}})
    suspended = submit()
    to_explain(suspended["code"], people)
    supervision.suspend(suspended["code"], people["lanhdao"], "unable", "Đang điều trị")
    fixed_clock.advance(days=3)
    supervision.resume(suspended["code"], people["lanhdao"])
    withdrawn = submit()
    requests.withdraw(withdrawn["code"], withdrawn["token"], "Đã được giải quyết")
    assert mail.deliver_due() == len(outbox())
    by_code: dict[str, list] = {}
    for message in smtp.inbox.messages(CITIZEN_MAIL):
        by_code.setdefault(message["X-GiaiTrinh-Request"], []).append(message)

    def notice(code, title):
        found = [m for m in by_code[code] if title in str(m["Subject"])]
        assert found, (code, title, [str(m["Subject"]) for m in by_code[code]])
        return body(found[-1])

    assert "bí mật nhà nước" in notice(refused["code"], "Thông báo từ chối giải trình")
    assert "Sở Xây dựng" in notice(redirected["code"], "Hướng dẫn gửi yêu cầu")
    assert "Bản sao quyết định" in notice(incomplete["code"], "Đề nghị bổ sung thông tin")
    text = notice(extended["code"], "Thông báo gia hạn giải trình")
    new_deadline = requests.view(extended["code"], extended["token"])["deadlines"]["explain_by"]
    assert "Cần xác minh hồ sơ" in text and f"Thời hạn mới: đến hết ngày {new_deadline[8:10]}/{new_deadline[5:7]}" in text
    assert "Đang điều trị" in notice(suspended["code"], "Thông báo tạm đình chỉ giải trình")
    resumed = requests.view(suspended["code"], suspended["token"])["deadlines"]["explain_by"]
    assert f"{resumed[8:10]}/{resumed[5:7]}/{resumed[:4]}" in notice(suspended["code"], "Thông báo tiếp tục giải trình")
    assert "Đã được giải quyết" in notice(withdrawn["code"], "Thông báo đình chỉ giải trình")


def test_no_email_address_means_no_message(world, people):
    requester = {k: v for k, v in CITIZEN["requester"].items() if k != "email"}
    sub = requests.submit(dict(CITIZEN, requester=requester))
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    assert outbox() == []


# -- the mail server is down -----------------------------------------------------------------------


def test_an_smtp_outage_never_blocks_the_action_and_delivery_retries_with_backoff(world, people, smtp_down,
                                                                                  fixed_clock):
    sub = submit()  # commits although nothing listens
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    assert requests.view(sub["code"], sub["token"])["status"] == "accepted"
    assert mail.deliver_due() == 0
    rows = outbox()
    assert [r.status for r in rows] == ["queued", "queued"] and all(r.attempts == 1 for r in rows)
    assert all(r.last_error and "Connection refused" in r.last_error for r in rows)
    first_due = rows[0].due_at
    assert first_due == fixed_clock.now() + timedelta(seconds=30)
    assert rows[0].secret is not None  # the link is kept until a server has the message
    assert mail.deliver_due() == 0 and outbox()[0].attempts == 1  # not before its backoff
    fixed_clock.advance(seconds=30)
    assert mail.deliver_due() == 0 and outbox()[0].attempts == 2
    assert outbox()[0].due_at == fixed_clock.now() + timedelta(seconds=60)
    smtp_down.start()  # the server comes back
    fixed_clock.advance(seconds=59)
    assert mail.deliver_due() == 0  # still waiting out its backoff
    fixed_clock.advance(seconds=1)
    assert mail.deliver_due() == 2
    assert len(smtp_down.inbox.messages(CITIZEN_MAIL)) == 2
    assert [r.status for r in outbox()] == ["sent", "sent"] and outbox()[0].secret is None
    link = re.search(r"http://giaitrinh\.test/yeu-cau/\S+", body(smtp_down.inbox.messages()[0])).group(0)
    assert sub["token"] in link


def test_after_the_last_attempt_the_message_is_failed_visible_and_can_be_retried(world, people, smtp_down,
                                                                                fixed_clock):
    sub = submit()
    for _attempt in range(timers.MAX_ATTEMPTS):
        mail.deliver_due()
        fixed_clock.advance(hours=2)
    [row] = outbox()
    assert row.status == "failed" and row.attempts == timers.MAX_ATTEMPTS
    assert mail.deliver_due() == 0  # a failed message is not tried again by itself
    with db.read_only() as session:
        incident = session.execute(select(AuditEvent).where(AuditEvent.action == "incident")).scalar_one()
        assert incident.step == "mail" and incident.after["outbox_message"] == row.id
        assert incident.request_id == session.execute(select(Request.id)).scalar_one()
    admin = people["admin"]
    listed = notification_service.list_outbox(admin, status="failed")
    assert listed["counts"]["failed"] == 1 and listed["items"][0]["last_error"]
    assert "body" not in listed["items"][0]
    with pytest.raises(Forbidden):
        notification_service.list_outbox(people["thanhtra"])
    with pytest.raises(Forbidden):
        notification_service.retry_message(people["lanhdao"], row.id)
    smtp_down.start()
    notification_service.retry_message(admin, row.id)
    assert outbox()[0].status == "queued"
    assert mail.deliver_due() == 1
    assert sub["token"] in body(smtp_down.inbox.messages()[0])
    with db.read_only() as session:
        assert audit.verify(session).ok


def test_a_rolled_back_action_leaves_no_message(world, people, monkeypatch):
    sub = submit()
    before = len(outbox())

    def boom(*_args, **_kwargs):
        raise RuntimeError("crash after the workflow ran")

    monkeypatch.setattr(_common, "apply_status_effects", boom)
    with pytest.raises(RuntimeError):
        do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    assert len(outbox()) == before  # the notice went with the action: rolled back together


# -- officials -------------------------------------------------------------------------------------


def _gm_head():
    with db.transaction() as session:
        user = User(username="lanhdao_gm", full_name="Lãnh đạo Gia Minh", email="head@giaminh.gov.vn",
                    password_hash="x", is_active=True, created_at=demo.clock.now())
        session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, role="head", unit_code="GM"))
    return demo._actor("lanhdao_gm")


def test_escalation_notifies_the_head_and_supervisors_of_that_unit_only(world, people, smtp, fixed_clock):
    set_email("lanhdao", "lanhdao@myxuyen.gov.vn")
    set_email("thanhtra", "thanhtra@myxuyen.gov.vn")
    gm_head = _gm_head()
    with db.transaction() as session:  # a city above the ward, with its own inspector
        session.add(Unit(code="HN", name="UBND thành phố"))
        session.flush()
        session.execute(update(Unit).where(Unit.code == "MX").values(parent_code="HN"))
        city = User(username="thanhtra_tp", full_name="Thanh tra thành phố", password_hash="x", is_active=True,
                    created_at=demo.clock.now())
        session.add(city)
        session.flush()
        session.add(Membership(user_id=city.id, role="supervisor", unit_code="HN"))
    sub = submit()
    fixed_clock.set(fixed_clock.now() + timedelta(days=11))  # past 24:00 on Monday 30/11
    assert timers.run_due() >= 1
    mail.deliver_due()
    people = dict(people, thanhtra_tp=demo._actor("thanhtra_tp"))
    for username in ("lanhdao", "thanhtra", "thanhtra_tp"):
        found = notification_service.list_for(people[username])
        assert [n["kind"] for n in found["items"]] == ["escalated"], username
        assert found["items"][0]["request_code"] == sub["code"] and found["unread"] == 1
    assert "quá hạn bước receive (lần 1)" in notification_service.list_for(people["lanhdao"])["items"][0]["title"]
    assert [str(m["Subject"]) for m in smtp.inbox.messages("lanhdao@myxuyen.gov.vn")] == [
        f"[{sub['code']}] Hồ sơ quá hạn / Case overdue"]
    assert smtp.inbox.messages("thanhtra@myxuyen.gov.vn")
    # Nobody of the other ward hears of it, by app or by mail.
    assert notification_service.list_for(gm_head)["total"] == 0
    assert notification_service.list_for(people["chuyenvien2"])["total"] == 0
    assert not smtp.inbox.messages("head@giaminh.gov.vn")


def test_in_app_list_is_per_person_and_unit_scoped_and_marks_read(world, people):
    gm_head = _gm_head()
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    do(sub["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    mine = notification_service.list_for(people["chuyenvien"])
    assert [n["kind"] for n in mine["items"]] == ["assigned"] and mine["unread"] == 1
    assert notification_service.unread_count(people["chuyenvien"]) == 1
    for other in ("lanhdao", "tiepnhan", "chuyenvien2"):
        assert notification_service.list_for(people[other])["total"] == 0
    assert notification_service.list_for(gm_head)["total"] == 0
    # Someone else's ids mark nothing.
    assert notification_service.mark_read(people["lanhdao"], [mine["items"][0]["id"]]) == 0
    assert notification_service.unread_count(people["chuyenvien"]) == 1
    assert notification_service.mark_read(people["chuyenvien"], [mine["items"][0]["id"]]) == 1
    assert notification_service.unread_count(people["chuyenvien"]) == 0
    assert notification_service.list_for(people["chuyenvien"], unread_only=True)["total"] == 0
    # An official moved to another unit no longer sees notices about the unit left behind.
    with db.transaction() as session:
        user_id = session.execute(select(User.id).where(User.username == "chuyenvien")).scalar_one()
        session.execute(update(Membership).where(Membership.user_id == user_id).values(unit_code="GM"))
    moved = demo._actor("chuyenvien")
    assert notification_service.list_for(moved)["total"] == 0
    with pytest.raises(ValidationFailed):
        notification_service.mark_read(people["chuyenvien"], ["1; DROP TABLE"])
    with pytest.raises(Forbidden):
        notification_service.list_for(demo.accounts.Actor("citizen"))


def test_notify_urge_for_the_supervisors_urge_action(world, people, smtp):
    set_email("chuyenvien", "chuyen@myxuyen.gov.vn")
    sub = submit()
    to_explain(sub["code"], people)
    # Inside another use case's transaction (the supervisors' urge of another branch).
    with db.transaction() as session:
        request = _common.request_for_update(session, sub["code"])
        notice = notifications.notify_urge(session, request, "chuyenvien", "Hạn chót thứ Hai", by="thanhtra")
        assert notice.kind == "urged"
    with db.transaction() as session:
        request = _common.request_for_update(session, sub["code"])
        with pytest.raises(ValidationFailed):  # an official of another unit is never told about this case
            notifications.notify_urge(session, request, "chuyenvien2", None, by="thanhtra")
    # And through the supervisors' urge use case, which checks who may urge.
    supervision.urge(sub["code"], people["lanhdao"], "Đề nghị khẩn trương")
    with pytest.raises(Forbidden):
        supervision.urge(sub["code"], people["chuyenvien2"], "Đề nghị khẩn trương")
    urged = [n for n in notification_service.list_for(people["chuyenvien"])["items"] if n["kind"] == "urged"]
    assert len(urged) == 2 and "Hạn chót thứ Hai" in urged[1]["body"]
    assert notification_service.list_for(people["chuyenvien2"])["total"] == 0
    mail.deliver_due()
    subjects = smtp.inbox.subjects("chuyen@myxuyen.gov.vn")
    assert subjects.count(f"[{sub['code']}] Đôn đốc giải trình / Reminder to act on a case") == 2
    with db.read_only() as session:
        assert session.execute(select(AuditEvent).where(AuditEvent.action == "urged")).scalar_one().actor == "lanhdao"


# -- attachments, retention, settings --------------------------------------------------------------


def test_a_document_attached_to_a_notice_is_sent_with_it(world, people, smtp):
    pdf = b"%PDF-1.4 thong bao thu ly"

    def resolver(_session, reference):
        if reference.get("document_id") == 7:
            return ("thong-bao-thu-ly.pdf", "application/pdf", pdf)
        return None

    mail.register_attachment_resolver(resolver)
    try:
        sub = submit()
        with db.transaction() as session:
            request = _common.request_for_update(session, sub["code"])
            notifications.case_event(session, request, "accepted")
            assert notifications.attach(session, request.id, "accepted", {"document_id": 7}) is not None
            assert notifications.attach(session, request.id, "refused", {"document_id": 7}) is None
        assert mail.deliver_due() == 2
        message = smtp.inbox.messages(CITIZEN_MAIL)[-1]
        [part] = list(message.iter_attachments())
        assert part.get_filename() == "thong-bao-thu-ly.pdf" and part.get_content() == pdf
        assert body(message).startswith("Kính gửi")
        # A document issued before its notice is queued waits for it in the transaction.
        with db.transaction() as session:
            request = _common.request_for_update(session, sub["code"])
            assert notifications.attach(session, request.id, "extended", {"document_id": 7}) is None
            notifications.case_event(session, request, "extended", "Cần xác minh")
        # A reference nobody can resolve makes the delivery wait (retry), it is not sent without it.
        with db.transaction() as session:
            request = _common.request_for_update(session, sub["code"])
            notifications.case_event(session, request, "explained")
            notifications.attach(session, request.id, "explained", {"document_id": 8})
        assert mail.deliver_due() == 1
        assert len(list(smtp.inbox.messages(CITIZEN_MAIL)[-1].iter_attachments())) == 1
        unresolved = outbox(kind="explained")[0]
        assert unresolved.status == "queued" and "no attachment resolver" in unresolved.last_error
    finally:
        mail.unregister_attachment_resolver(resolver)


def test_retention_erases_what_the_messages_said(world, people, fixed_clock):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    mail.deliver_due()  # the outbox backend: kept, with the link, for /dev/outbox
    assert outbox()[0].secret is not None
    fixed_clock.advance(days=400)
    retention.purge(sub["code"])
    rows = outbox()
    assert rows and all(r.body == "[đã xóa]" and r.recipient == "[đã xóa]" and r.secret is None for r in rows)


def test_mail_settings_from_the_environment(monkeypatch):
    for name in ("GIAITRINH_MAIL_BACKEND", "GIAITRINH_SMTP_PORT", "GIAITRINH_SMTP_STARTTLS", "GIAITRINH_SMTP_SSL",
                 "GIAITRINH_PUBLIC_URL", "GIAITRINH_ENV"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().mail_backend == "outbox"
    monkeypatch.setenv("GIAITRINH_ENV", "production")
    settings = load_settings()
    assert settings.mail_backend == "smtp" and settings.smtp_port == 25
    monkeypatch.setenv("GIAITRINH_MAIL_BACKEND", "outbox")
    with pytest.raises(ConfigError):
        load_settings()
    monkeypatch.setenv("GIAITRINH_MAIL_BACKEND", "smtp")
    monkeypatch.setenv("GIAITRINH_SMTP_STARTTLS", "1")
    monkeypatch.setenv("GIAITRINH_PUBLIC_URL", "https://giaitrinh.myxuyen.gov.vn/")
    settings = load_settings()
    assert settings.smtp_port == 587 and settings.public_url == "https://giaitrinh.myxuyen.gov.vn"
    monkeypatch.setenv("GIAITRINH_SMTP_PORT", "99999")
    with pytest.raises(ConfigError):
        load_settings()


class Picky(Inbox):
    """Refuses one recipient, as a real server refuses an unknown mailbox."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == "khongton@example.vn":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_refused_recipient_fails_alone_and_a_long_sweep_gives_the_rest_back(world, people, smtp, monkeypatch,
                                                                             fixed_clock):
    smtp.stop()
    smtp.inbox = Picky()
    smtp.start()
    bad = requests.submit(dict(CITIZEN, requester=dict(CITIZEN["requester"], email="khongton@example.vn")))
    good = submit()
    assert mail.deliver_due() == 1
    refused, sent = outbox()
    assert refused.request_id != sent.request_id
    assert refused.status == "queued" and refused.attempts == 1 and "550" in refused.last_error
    assert sent.status == "sent" and smtp.inbox.messages()[0]["X-GiaiTrinh-Request"] == good["code"]
    assert bad["code"] != good["code"]
    # A sweep that runs out of time releases what it claimed and did not try: no attempt counted.
    monkeypatch.setattr(mail, "SWEEP_SECONDS", 0.0)
    fixed_clock.advance(minutes=5)
    submit()
    submit()
    assert mail.deliver_due() == 0  # the refused one came first, failed again, and time was up
    rows = outbox()
    assert rows[0].attempts == 2
    assert [(r.status, r.attempts, r.lease_owner) for r in rows[2:]] == [("queued", 0, None)] * 2
    assert mail.deliver_due() == 1 and mail.deliver_due() == 1  # the next sweeps take them, one each
    assert [r.status for r in outbox()] == ["queued", "sent", "sent", "sent"]


def test_the_scheduler_sweep_delivers_mail_after_the_timers(world, smtp, fixed_clock):
    submit()
    assert timers.run_due() == 0 and len(smtp.inbox.envelopes) == 0  # timers alone send nothing
    timers._sweep()  # what the background scheduler runs (its next wake-up is not planned here)
    assert len(smtp.inbox.envelopes) == 1
    assert mail.next_due() is None
    submit()
    assert mail.next_due() == fixed_clock.now()


def test_each_notice_carries_its_formal_document_as_a_pdf(world, people, smtp, fixed_clock):
    import io

    from pypdf import PdfReader

    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept", "note": "Đủ điều kiện"})
    supervision.terminate(sub["code"], people["thanhtra"], "withdrawn", "Người yêu cầu rút đơn tại trụ sở")
    mail.deliver_due()
    by_kind = {}
    for message in smtp.inbox.messages(CITIZEN_MAIL):
        pdfs = [part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"]
        by_kind[str(message["Subject"]).split("] ", 1)[1].split(" / ")[0]] = pdfs
    assert by_kind["Xác nhận đã nhận yêu cầu giải trình"] == []  # the acknowledgement has no document
    [acceptance] = by_kind["Thông báo thụ lý giải trình"]
    assert acceptance.get_filename().startswith("acceptance_notice-1-TB-")
    text = PdfReader(io.BytesIO(acceptance.get_content())).pages[0].extract_text()
    assert "THÔNG BÁO" in text and "Nguyễn Văn An" in text
    [termination] = [pdfs for kind, pdfs in by_kind.items() if "đình chỉ" in kind.lower()][0]
    text = " ".join(PdfReader(io.BytesIO(termination.get_content())).pages[0].extract_text().split())
    assert "Số: 2/TB-UBND" in text and "rút toàn bộ yêu cầu" in text and "rút đơn tại trụ sở" in text


def test_a_batch_reads_the_same_escalation_recipients_as_one_unit_at_a_time(world, people):
    """The scheduler's batch reads every unit's recipients in one statement (prefetch): the same
    people, in the same order, as the one-unit query, above and below, active accounts only."""
    _gm_head()
    with db.transaction() as session:
        session.add(Unit(code="HN", name="UBND thành phố"))
        session.flush()
        session.execute(update(Unit).where(Unit.code.in_(("MX", "GM"))).values(parent_code="HN"))
        for username, role, unit, active in (("thanhtra_tp", "supervisor", "HN", True),
                                             ("lanhdao_tp", "head", "HN", True),
                                             ("thanhtra_all", "supervisor", None, True),
                                             ("lanhdao_cu", "head", "MX", False)):
            user = User(username=username, full_name=username, password_hash="x", is_active=active,
                        created_at=demo.clock.now())
            session.add(user)
            session.flush()
            session.add(Membership(user_id=user.id, role=role, unit_code=unit))
    with db.read_only() as session:
        one_at_a_time = {code: notifications._read_escalation_recipients(session, code) for code in ("MX", "GM", "HN")}
    with db.read_only() as session:
        notifications.prefetch_escalation_recipients(session, ["MX", "GM", "HN"])
        batch = {code: notifications._escalation_recipients(session, code) for code in ("MX", "GM", "HN")}
    assert batch == one_at_a_time
    names = {code: [username for username, _email in found] for code, found in batch.items()}
    assert "lanhdao" in names["MX"] and "lanhdao_gm" not in names["MX"] and "lanhdao_cu" not in names["MX"]
    assert {"thanhtra_tp", "thanhtra_all"} <= set(names["MX"]) and "lanhdao_tp" not in names["MX"]
    assert "lanhdao_tp" in names["HN"] and "lanhdao_gm" in names["GM"]


def test_a_message_queued_in_a_rolled_back_savepoint_is_not_sent_and_the_others_are(world):
    # The scheduler's batch fires each case in a savepoint when one of them fails: the failed
    # firing's escalation mail goes with it, its neighbours' stay queued.
    with db.transaction() as session:
        notifications.queue_email(session, to="truoc@example.vn", kind="escalated", subject="before", body="x")
        with pytest.raises(RuntimeError):
            with session.begin_nested():
                notifications.queue_email(session, to="hong@example.vn", kind="escalated", subject="failed", body="x")
                raise RuntimeError("the firing broke")
        with session.begin_nested():
            notifications.queue_email(session, to="sau@example.vn", kind="escalated", subject="after", body="x")
        assert [m.subject for m in notifications.queued_in(session)] == ["before", "after"]
    with pytest.raises(RuntimeError):
        with db.transaction() as session:
            notifications.queue_email(session, to="bo@example.vn", kind="escalated", subject="abandoned", body="x")
            raise RuntimeError("the use case failed")
    with db.read_only() as session:
        rows = [(m.subject, m.recipient, m.status, m.attempts, m.version)
                for m in session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()]
    assert rows == [
        ("before", "truoc@example.vn", "queued", 0, 1), ("after", "sau@example.vn", "queued", 0, 1)]
