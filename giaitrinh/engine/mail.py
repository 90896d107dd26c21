"""Delivering the email outbox: build each message, send it over SMTP (or keep it), record the result.

Messages are written by :mod:`engine.notifications` into ``outbox_messages`` in the same
transaction as the event that causes them, and nothing is sent inside that transaction.
Each row is its own delivery job, claimed the way :mod:`engine.timers` claims timers: a
lease (owner, expiry by the wall clock), ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and the
row's version as a fencing token. The message is sent with no transaction open; the result
is written in a second, short one that commits only if the claim is still ours. A failure
retries with the timers' backoff (30 s, 1 min, 2 min, ... by the engine clock, so tests and
the dev clock move it) and after ``MAX_ATTEMPTS`` the row is ``failed``, an ``incident``
audit event names it, and an administrator can put it back in the queue.

Delivery is at least once: if the server accepted a message and this process died before
recording it, the message goes again after the lease expires, with the same Message-ID so
a mail client can tell it is the same message.

The scheduler's sweep (``timers._sweep``) calls :func:`deliver_due` after the timers, so
``giaitrinh serve`` delivers mail with no extra process; ``giaitrinh mail send-due`` does it
once from the command line.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any, Callable

from sqlalchemy import func, select

from . import audit, clock, db, leasing
from . import calendar as cal
from .errors import NotFound
from .models import OutboxMessage, Request

log = logging.getLogger(__name__)

BATCH = 50
# One sweep spends at most this long sending before it gives the scheduler back to the timers.
SWEEP_SECONDS = 20.0


class ServerUnreachable(Exception):
    """The mail server could not be reached: every message waiting for it failed the same way."""


def _unreachable(exc: BaseException) -> bool:
    """A failure of the server or of our access to it, not of one message (SMTP errors are OSErrors too)."""
    if isinstance(exc, (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, smtplib.SMTPHeloError,
                        smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError)):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
QUEUED, SENT, FAILED = "queued", "sent", "failed"


@dataclass(frozen=True)
class MailConfig:
    backend: str = "outbox"  # outbox | smtp
    host: str = "localhost"
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 10.0
    sender: str = "GiảiTrình <no-reply@localhost>"
    public_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_settings(cls, settings) -> "MailConfig":
        return cls(backend=settings.mail_backend, host=settings.smtp_host, port=settings.smtp_port,
                   user=settings.smtp_user, password=settings.smtp_password, starttls=settings.smtp_starttls,
                   ssl=settings.smtp_ssl, timeout=settings.smtp_timeout, sender=settings.mail_from,
                   public_url=settings.public_url.rstrip("/"))

    def with_changes(self, **changes) -> "MailConfig":
        return replace(self, **changes)


_config = MailConfig()


def configure(config: MailConfig) -> None:
    """Set this process's mail settings (``boot`` does it from the environment; tests directly)."""
    global _config
    _config = config


def config() -> MailConfig:
    return _config


# -- attachments ------------------------------------------------------------------------------

# (session, reference) -> (file name, MIME type, content). Registered by whatever issues
# documents (the formal PDF notices); a message naming attachments waits (retries) until
# one is registered and can produce every file.
AttachmentResolver = Callable[[Any, dict], tuple[str, str, bytes]]
_resolvers: list[AttachmentResolver] = []


def register_attachment_resolver(resolver: AttachmentResolver) -> None:
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def unregister_attachment_resolver(resolver: AttachmentResolver) -> None:
    if resolver in _resolvers:
        _resolvers.remove(resolver)


def _resolve(session, reference: dict) -> tuple[str, str, bytes]:
    for resolver in _resolvers:
        found = resolver(session, reference)
        if found is not None:
            return found
    raise LookupError(f"no attachment resolver knows {reference!r}")


# -- one message ----------------------------------------------------------------------------

# Stands in the stored body where the citizen's tracking link goes (see engine.notifications).
LINK_PLACEHOLDER = "[liên kết tra cứu / tracking link]"


def full_body(row: OutboxMessage) -> str:
    """The body as the recipient reads it: the tracking link put back while it is still kept."""
    if row.secret:
        return row.body.replace(LINK_PLACEHOLDER, row.secret, 1)
    return row.body


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[1] if "@" in address else "localhost"


def message_id(row: OutboxMessage, sender: str) -> str:
    """Stable across retries: a repeated delivery is recognisably the same message."""
    stamp = int(row.created_at.timestamp()) if row.created_at else 0
    return f"<giaitrinh.{row.id}.{stamp}@{_domain(sender)}>"


def build(row: OutboxMessage, cfg: MailConfig, files: list[tuple[str, str, bytes]] = (),
          request_code: str | None = None) -> Message:
    """The MIME message: UTF-8 plain text, RFC 2047 encoded subject and sender name, Date in +07:00.

    Built with ``email.mime`` and ``Header`` rather than ``EmailMessage``: Python 3.11's folding
    of long non-ASCII headers drops the space at an encoded-word boundary ("yêu cầu" arrives
    as "yêucầu"); ``Header`` keeps every space inside the encoded words.
    """
    text = MIMEText(full_body(row), "plain", "utf-8")
    if files:
        msg: Message = MIMEMultipart("mixed")
        msg.attach(text)
        for filename, content_type, content in files:
            maintype, _, subtype = content_type.partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            part.set_payload(content)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
            msg.attach(part)
    else:
        msg = text
    msg["Subject"] = Header(row.subject, "utf-8")
    name, address = parseaddr(cfg.sender)
    msg["From"] = formataddr((name, address))
    msg["To"] = row.recipient
    msg["Date"] = format_datetime(clock.now().astimezone(cal.LOCAL_TZ))
    msg["Message-ID"] = row.message_id or message_id(row, cfg.sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a notice
    msg["Content-Language"] = "vi, en"
    if request_code:
        msg["X-GiaiTrinh-Request"] = request_code
    return msg


def _smtp_send(msg: Message, cfg: MailConfig) -> None:
    if cfg.ssl:
        server = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
    with server:
        if cfg.starttls:
            server.starttls(context=ssl.create_default_context())
        if cfg.user:
            server.login(cfg.user, cfg.password or "")
        server.send_message(msg)


# -- the delivery loop ------------------------------------------------------------------------


def _claim(now: datetime, limit: int) -> list[tuple[int, int]]:
    from .timers import LEASE, owner

    with db.transaction() as session:
        claimed = leasing.claim_due(session, OutboxMessage.__table__, QUEUED, now, limit, owner(), LEASE)
        return [(row.id, row.version) for row in claimed]


def _still_ours(row: OutboxMessage | None, fence: int | None) -> bool:
    from .timers import owner

    if row is None or row.status != QUEUED:
        return False
    if fence is None:  # a direct call: only if nobody holds a live lease
        return row.lease_expires_at is None or row.lease_expires_at < clock.wall_now() or row.lease_owner == owner()
    return row.version == fence and row.lease_owner == owner()


def _locked(session, message_id_: int) -> OutboxMessage | None:
    return session.execute(
        select(OutboxMessage).where(OutboxMessage.id == message_id_).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def deliver(message_id_: int, fence: int | None = None) -> bool:
    """Send one claimed message; True if it went. Never raises for a delivery problem."""
    try:
        return _deliver(message_id_, fence)
    except ServerUnreachable:
        return False


def _deliver(message_id_: int, fence: int | None) -> bool:
    """:func:`deliver`, raising ``ServerUnreachable`` (after recording it) when the server is down."""
    cfg = _config
    try:
        with db.read_only() as session:
            row = session.get(OutboxMessage, message_id_)
            if not _still_ours(row, fence):
                return False
            code = None
            if row.request_id is not None:
                code = session.execute(select(Request.code).where(Request.id == row.request_id)).scalar_one_or_none()
            files = [_resolve(session, ref) for ref in (row.attachments or [])]
            msg = build(row, cfg, files, code)
        if cfg.backend == "smtp":
            _smtp_send(msg, cfg)
        # The outbox backend keeps the message where /dev/outbox shows it: nothing to send.
    except Exception as exc:  # noqa: BLE001 - the mail server or an attachment failed: retry later
        _record_failure(message_id_, fence, exc)
        if _unreachable(exc):
            raise ServerUnreachable(str(exc)) from exc
        return False
    try:
        with db.transaction() as session:
            row = _locked(session, message_id_)
            if row is None or (fence is not None and row.version != fence) or row.status != QUEUED:
                log.warning("mail %s was sent but changed meanwhile; it may go twice", message_id_)
                return True
            row.status = SENT
            row.attempts += 1
            row.sent_at = clock.now()
            row.message_id = msg["Message-ID"]
            row.last_error = None
            row.lease_owner = None
            row.lease_expires_at = None
            if cfg.backend == "smtp":
                row.secret = None  # the mail server has it: the plain token is not kept any longer
        return True
    except Exception:  # noqa: BLE001 - sent but not recorded: the lease expires and it goes again
        log.exception("mail %s was sent but its result could not be recorded", message_id_)
        return True


def _record_failure(message_id_: int, fence: int | None, exc: Exception) -> None:
    from .timers import MAX_ATTEMPTS, _backoff

    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    log.warning("mail %s not delivered: %s", message_id_, detail)
    try:
        with db.transaction() as session:
            row = _locked(session, message_id_)
            if row is None or row.status != QUEUED or (fence is not None and row.version != fence):
                return
            row.attempts += 1
            row.last_error = detail
            row.lease_owner = None
            row.lease_expires_at = None
            if row.attempts >= MAX_ATTEMPTS:
                row.status = FAILED
                audit.record(session, "incident", actor="system", request_id=row.request_id, step="mail",
                             public=False, note=f"Không gửi được thư {row.kind} #{row.id}: {detail[:400]}",
                             after={"outbox_message": row.id, "kind": row.kind, "attempts": row.attempts})
            else:
                row.due_at = clock.now() + _backoff(row.attempts)
    except Exception:  # noqa: BLE001 - the lease expires and it is tried again
        log.exception("could not record the failure of mail %s", message_id_)


def deliver_due(now: datetime | None = None, limit: int | None = None) -> int:
    """Send every message due by ``now`` (default: the engine clock); returns how many went.

    A server that cannot be reached fails every message of the batch at once (they all back
    off together instead of each waiting out a connection timeout), and a sweep stops after
    ``SWEEP_SECONDS`` (what it claimed and did not try is released for the next sweep), so a
    slow or silent mail server never holds up the timers that share the scheduler.
    """
    now = now or clock.now()
    started = time.monotonic()
    sent = 0
    done = 0
    while limit is None or done < limit:
        claimed = _claim(now, BATCH if limit is None else min(BATCH, limit - done))
        if not claimed:
            break
        for index, (row_id, fence) in enumerate(claimed):
            try:
                sent += _deliver(row_id, fence)
            except ServerUnreachable as down:
                for other_id, other_fence in claimed[index + 1:]:
                    _record_failure(other_id, other_fence, down)
                return sent
            done += 1
            if time.monotonic() - started > SWEEP_SECONDS:
                _release(claimed[index + 1:])
                return sent
    return sent


def _release(claimed: list[tuple[int, int]]) -> None:
    """Give back messages claimed but not tried: the next sweep takes them, no attempt counted."""
    if not claimed:
        return
    try:
        with db.transaction() as session:
            for row_id, fence in claimed:
                row = _locked(session, row_id)
                if row is not None and row.status == QUEUED and row.version == fence:
                    row.lease_owner = None
                    row.lease_expires_at = None
    except Exception:  # noqa: BLE001 - the leases expire by themselves
        log.debug("could not release mail leases", exc_info=True)


def next_due() -> datetime | None:
    wall = clock.wall_now()
    with db.read_only() as session:
        return session.execute(
            select(func.min(OutboxMessage.due_at)).where(
                OutboxMessage.status == QUEUED,
                (OutboxMessage.lease_expires_at.is_(None)) | (OutboxMessage.lease_expires_at < wall))
        ).scalar_one_or_none()


def retry(message_id_: int, actor: str) -> None:
    """Put a failed message back in the queue, due now (an administrator fixed the cause)."""
    with db.transaction() as session:
        row = _locked(session, message_id_)
        if row is None or row.status != FAILED:
            raise NotFound("không có thư lỗi này (unknown failed message)")
        row.status = QUEUED
        row.attempts = 0
        row.due_at = clock.now()
        row.lease_owner = None
        row.lease_expires_at = None
        audit.record(session, "incident_retried", actor=actor, request_id=row.request_id, step="mail", public=False,
                     before={"outbox_message": row.id, "last_error": (row.last_error or "")[:500]})
    from . import timers

    timers.wake()
