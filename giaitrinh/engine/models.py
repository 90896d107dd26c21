"""SQLAlchemy 2.0 models.

Engine state is private, cases are public: the serialized SpiffWorkflow instance
lives in ``workflow_states`` and is read only by ``engine.runtime``. Everything a
page lists, filters, counts or reports on is a typed, indexed column of
``requests``, ``tasks``, ``jobs`` or ``escalations``, written in the same
transaction as the state.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    false,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator
from datetime import timezone


class UtcDateTime(TypeDecorator):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite drops offsets)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)

    # On SQLite, the text written directly by datetime's C method: a lifecycle writes some seventy
    # of these, and SQLAlchemy's DATETIME formats each with a % of a dict, after this decorator's
    # own Python call. The text is the same: SQLAlchemy's storage format is ISO 8601 with a space
    # and six digits of microseconds (reading it back is left to SQLAlchemy, as fast already).
    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        utc = timezone.utc

        def process(value):
            if value is None:
                return None
            if value.tzinfo is utc:  # the clock's: the text without its offset
                return value.isoformat(" ", "microseconds")[:26]
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.astimezone(utc).replace(tzinfo=None).isoformat(" ", "microseconds")
        return process


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Unit(Base):
    __tablename__ = "units"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    parent_code: Mapped[Optional[str]] = mapped_column(ForeignKey("units.code"))
    email: Mapped[Optional[str]] = mapped_column(String(255))


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[Optional[str]] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # Throttling: consecutive failed sign-ins, and the lockout they earned (wall-clock time).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[Optional[datetime]]
    # "Sign out everywhere" bumps it: every session signed with an older epoch ends.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    memberships: Mapped[list["Membership"]] = relationship(
        back_populates="user", lazy="selectin", cascade="all, delete-orphan"
    )


class Membership(Base):
    """A role a user holds in a unit; ``unit_code`` NULL means every unit."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "role", "unit_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    unit_code: Mapped[Optional[str]] = mapped_column(ForeignKey("units.code"))

    user: Mapped[User] = relationship(back_populates="memberships")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[Optional[datetime]]


class Definition(Base):
    """An immutable, versioned process definition (BPMN plus its forms and periods)."""

    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft|deployed|retired
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Read only when the spec is not yet parsed in this process (runtime.spec_for).
    bpmn_xml: Mapped[str] = mapped_column(Text, deferred=True)
    manifest: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    created_by: Mapped[Optional[str]] = mapped_column(String(64))
    deployed_at: Mapped[Optional[datetime]]
    deployed_by: Mapped[Optional[str]] = mapped_column(String(64))


class Counter(Base):
    """Sequences such as the yearly request number, incremented inside the use case."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Request(Base):
    """A request for explanation: the public projection of one workflow instance."""

    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_unit_status", "unit_code", "status"),
        Index("ix_requests_open_deadline", "closed", "deadline_at"),
        # Reports: a unit's cases by the month they were received, and its ratings.
        Index("ix_requests_unit_received", "unit_code", "received_at"),
        Index("ix_requests_unit_rated", "unit_code", "rated_at"),
        # Supervision's counts of open, overdue, due-soon and escalated cases, city-wide or for a unit,
        # from the index alone (one pass over the open cases).
        Index("ix_requests_open_unit", "closed", "unit_code", "overdue", "deadline_at", "escalated"),
        # The dashboard's figures of the month: cases explained (on time, days taken) and acknowledged
        # (the working days each took, as recorded when it was acknowledged).
        Index("ix_requests_explained", "explained_at", "unit_code", "acknowledged_at"),
        Index("ix_requests_acknowledged", "acknowledged_at", "unit_code", "ack_working_days"),
        # The cases closed since an instant, city-wide or for a unit (the dashboard's "all" count).
        Index("ix_requests_closed", "closed", "closed_at", "unit_code"),
        # A unit's published answers, newest first (the search, read in that order).
        Index("ix_requests_unit_published", "unit_code", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"), index=True)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    status: Mapped[str] = mapped_column(String(24), index=True)
    current_step: Mapped[Optional[str]] = mapped_column(String(64))
    closed: Mapped[bool] = mapped_column(Boolean, default=False)

    subject: Mapped[str] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16), default="online")
    requester_kind: Mapped[str] = mapped_column(String(16), default="person")
    requester_name: Mapped[str] = mapped_column(String(255))
    requester_address: Mapped[str] = mapped_column(String(500))
    requester_phone: Mapped[str] = mapped_column(String(32))
    requester_email: Mapped[Optional[str]] = mapped_column(String(255))

    received_at: Mapped[datetime]
    acknowledged_at: Mapped[Optional[datetime]]
    explained_at: Mapped[Optional[datetime]]
    published_at: Mapped[Optional[datetime]] = mapped_column(index=True)
    closed_at: Mapped[Optional[datetime]]
    last_activity_at: Mapped[datetime]
    deadlines: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deadline_at: Mapped[Optional[datetime]]
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended_at: Mapped[Optional[datetime]]
    assignee: Mapped[Optional[str]] = mapped_column(String(64), index=True)

    outcome: Mapped[dict[str, Any]] = mapped_column(default=dict)
    explanation: Mapped[Optional[dict[str, Any]]]
    published_text: Mapped[Optional[dict[str, Any]]]
    search_text: Mapped[Optional[str]] = mapped_column(Text)
    rating_score: Mapped[Optional[int]]
    rating_comment: Mapped[Optional[str]] = mapped_column(Text)
    rated_at: Mapped[Optional[datetime]]
    # Retention: when the requester's personal data was erased (the case and its answer stay).
    purged_at: Mapped[Optional[datetime]]
    # Reports (written when the fact happens, so reports are SQL aggregates over typed columns):
    # the acknowledgement decision (accept | refuse | redirect) and the refusal's legal ground,
    decision: Mapped[Optional[str]] = mapped_column(String(16))
    refusal_ground: Mapped[Optional[str]] = mapped_column(String(64))
    # working days from receipt to the acknowledgement (art. 147: the day of receipt not counted),
    ack_working_days: Mapped[Optional[int]]
    # the explanation deadline in force when the explanation was issued (extension and
    # suspensions included), and the days it took from the acceptance, suspended days left out.
    explain_due_at: Mapped[Optional[datetime]]
    explain_days: Mapped[Optional[int]]
    # Supervision's "stuck" facts (engine/attention.py keeps them in step with the task and job
    # rows, in the same transaction): the earliest due time of the open tasks, and whether work
    # is pending (an open task, an unfinished job, or the case waits for the requester).
    task_due_at: Mapped[Optional[datetime]]
    work_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The case has an escalation no one has handled yet (kept the same way, from the escalation rows).
    escalated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WorkflowState(Base):
    """The private, serialized SpiffWorkflow instance of a request."""

    __tablename__ = "workflow_states"

    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"))
    state: Mapped[str] = mapped_column(Text)
    # Optimistic lock: two writers on one instance cannot both commit.
    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}


class Task(Base):
    """A human task (user task of the BPMN), projected for inboxes."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_open_unit_due", "status", "unit_code", "due_at"),
        Index("ix_tasks_open_assignee_due", "status", "assignee", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255))
    candidate_role: Mapped[str] = mapped_column(String(32))
    unit_code: Mapped[str] = mapped_column(String(32))
    assignee: Mapped[Optional[str]] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|completed|cancelled
    created_at: Mapped[datetime]
    due_at: Mapped[Optional[datetime]]
    completed_at: Mapped[Optional[datetime]]
    completed_by: Mapped[Optional[str]] = mapped_column(String(64))
    data: Mapped[Optional[dict[str, Any]]]

    request: Mapped[Request] = relationship(lazy="joined")


class Job(Base):
    """A waiting BPMN timer (or other deferred work), due at an absolute time."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="timer")
    spiff_task_id: Mapped[Optional[str]] = mapped_column(String(36))
    step: Mapped[Optional[str]] = mapped_column(String(64))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting|paused|done|incident
    lease_owner: Mapped[Optional[str]] = mapped_column(String(128))
    lease_expires_at: Mapped[Optional[datetime]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime]
    fired_at: Mapped[Optional[datetime]]
    # Fencing token: every claim and every write bumps it, and an UPDATE names the
    # version it read, so a worker whose lease expired cannot commit a stale result.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    __mapper_args__ = {"version_id_col": version}


class Escalation(Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    unit_code: Mapped[str] = mapped_column(String(32), index=True)
    step: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer, default=1)
    raised_at: Mapped[datetime]
    due_at: Mapped[datetime]
    owner_role: Mapped[str] = mapped_column(String(32))
    resolved_at: Mapped[Optional[datetime]] = mapped_column(index=True)
    resolved_by: Mapped[Optional[str]] = mapped_column(String(64))
    note: Mapped[Optional[str]] = mapped_column(Text)

    request: Mapped[Request] = relationship(lazy="joined")


class AuditEvent(Base):
    """Append-only, hash-chained record of every state change."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("requests.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    step: Mapped[Optional[str]] = mapped_column(String(64))
    note: Mapped[Optional[str]] = mapped_column(Text)
    before: Mapped[Optional[dict[str, Any]]]
    after: Mapped[Optional[dict[str, Any]]]
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Scheme 2 chains a digest of the payload (note, before, after) instead of the payload,
    # so retention can erase personal data from an old event without breaking the chain:
    # a purged event keeps its digest, and the purge itself is an event naming it.
    hash_scheme: Mapped[int] = mapped_column(Integer, default=2, server_default="1")
    payload_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    purged_at: Mapped[Optional[datetime]]


class AuditHead(Base):
    """One row holding the newest audit hash; locking it serialises appends to the chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)


class CalendarDay(Base):
    """An official exception to the statutory calendar, kept by administrators.

    ``kind`` is ``day_off`` (an official day off the holidays package does not know)
    or ``working_day`` (a make-up Saturday, or a holiday the government moved).
    """

    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(255), default="")
    updated_by: Mapped[Optional[str]] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class RedactionRule(Base):
    """A text that must never be published (like Alaveteli's censor rules), kept by administrators."""

    __tablename__ = "redaction_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(500))
    is_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- notifications (branch notify) ---------------------------------------------------------


class OutboxMessage(Base):
    """An email, written in the same transaction as the event it tells of, sent afterwards.

    The row is its own delivery job (``due_at``, lease, attempts, fencing version), claimed
    by the scheduler like a timer: sending never happens inside the action, so a mail server
    that is down never blocks or rolls back what caused the message.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("requests.id"), index=True)
    unit_code: Mapped[Optional[str]] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(255))
    recipient_user: Mapped[Optional[str]] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    # The citizen's tracking link (it holds the plain token): kept only until the mail server
    # has accepted the message, then erased; the stored body has a placeholder in its place.
    secret: Mapped[Optional[str]] = mapped_column(Text)
    # References to documents to attach (e.g. {"document_id": 12}), resolved when sending.
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|sent|failed
    due_at: Mapped[datetime]
    lease_owner: Mapped[Optional[str]] = mapped_column(String(128))
    lease_expires_at: Mapped[Optional[datetime]]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[Optional[datetime]]
    message_id: Mapped[Optional[str]] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    __mapper_args__ = {"version_id_col": version}


class Notification(Base):
    """An in-app notice to one official (assignment, urging, escalation), about a case of a unit."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_read", "username", "read_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[Optional[int]] = mapped_column(ForeignKey("requests.id"), index=True)
    request_code: Mapped[Optional[str]] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    read_at: Mapped[Optional[datetime]]
# -- supervision (branch supervise) ---------------------------------------------------------

# The "no activity for N working days" stuck reason reads this over open cases.
Index("ix_requests_open_activity", Request.closed, Request.last_activity_at)

# Everything "stuck now" tests, for the live cases only (open, not suspended), city-wide or per
# unit: a count of the stuck cases reads this index alone (engine/attention.py). The columns of
# its condition come last: SQLite reads neither from a partial index's condition, so without
# them it is not covering; placed first, the planner (stat1 has no histogram) takes it for the
# lists too and sorts every stuck case instead of reading ix_requests_list in order.
LIVE_CASE_SQL = {"sqlite": "closed = 0 AND suspended_at IS NULL",
                 "postgresql": "closed = false AND suspended_at IS NULL"}
Index("ix_requests_attention", Request.unit_code, Request.task_due_at, Request.last_activity_at,
      Request.work_pending, Request.closed, Request.suspended_at, sqlite_where=text(LIVE_CASE_SQL["sqlite"]),
      postgresql_where=text(LIVE_CASE_SQL["postgresql"]),
      postgresql_include=["id"])  # the incident test reads the id (SQLite's rowid is in every index)


class TaskCandidate(Base):
    """A person added to an open task beside its candidate role (supervisors' "add a candidate").

    The task stays where it is (nothing is suspended); the person sees it in their inbox and
    may claim and complete it like a holder of the role.
    """

    __tablename__ = "task_candidates"
    __table_args__ = (UniqueConstraint("task_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime]


class SavedFilter(Base):
    """A named instance-list filter, the owner's own or shared with everyone holding a role.

    Sharing shows the filter, never the cases: results are always limited to the units the
    person looking may supervise.
    """

    __tablename__ = "saved_filters"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]]
    shared_with_role: Mapped[Optional[str]] = mapped_column(String(32), index=True)
    unit_code: Mapped[Optional[str]] = mapped_column(ForeignKey("units.code"))
    created_at: Mapped[datetime]


# Read only when the role and the assignee do not already let someone act (tasks.may_act).
Task.extra_candidates = relationship(TaskCandidate, lazy="select", viewonly=True,
                                     primaryjoin=Task.id == TaskCandidate.task_id)

# -- documents and attachments (branch documents) ----------------------------------------------


class DocumentTemplate(Base):
    """An administrator's version of a document kind's template; without a row the shipped default applies."""

    __tablename__ = "document_templates"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    sections: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class Document(Base):
    """A document issued on a case (notice, minutes, explanation): its fields are fixed when issued.

    ``content_sha256`` digests the fields at issue; the PDF and DOCX are rendered from them
    once, stored in ``document_files`` and never rewritten, their digests here.
    """

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("unit_code", "year", "type_code", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    unit_code: Mapped[str] = mapped_column(String(32))
    year: Mapped[int] = mapped_column(Integer)
    type_code: Mapped[str] = mapped_column(String(8))
    number: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    pdf_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    docx_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    rendered_at: Mapped[Optional[datetime]]


class DocumentFile(Base):
    """The rendered bytes of a document in one format, written once."""

    __tablename__ = "document_files"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    format: Mapped[str] = mapped_column(String(8), primary_key=True)  # pdf|docx
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class Attachment(Base):
    """Evidence a citizen attached, or a signed scan an official added; the bytes live on disk by sha256."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # evidence|signed_scan
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    note: Mapped[Optional[str]] = mapped_column(String(500))
    uploaded_at: Mapped[datetime]
    uploaded_by: Mapped[str] = mapped_column(String(64))
# -- bench branch: the published-answer search, outside the ORM ------------------------------
#
# ``requests.search_text`` is matched word by word as a substring (``LIKE '%word%'``). At a
# city's million requests a scan of the column costs seconds, so each backend gets an index
# of trigrams that answers those patterns: on SQLite an FTS5 table with the trigram tokenizer
# holding the published answers' search text and unit (a compact copy: counting the matches of
# a common word reads it, not the wide requests rows), kept in step by triggers; on
# PostgreSQL a GIN index with pg_trgm's operator class. Neither is an ORM object (the query
# names the FTS5 table through ``SEARCH_TABLE``); ``create_all`` builds them through these DDL
# events and migration 0008 builds them on existing databases. Results are the same as the
# plain scan: on FTS5 a word is a phrase of its trigrams (a substring match), and pg_trgm
# rechecks each row it finds.

from sqlalchemy import DDL, column, event, table  # noqa: E402

SEARCH_TABLE = table("requests_search", column("rowid"), column("search_text"), column("unit_code"))
SEARCH_TRGM_INDEX = "ix_requests_search_trgm"
# Names a schema comparison must leave alone (the FTS5 table and the shadow tables it keeps).
SEARCH_OBJECTS = frozenset({"requests_search", "requests_search_data", "requests_search_idx",
                            "requests_search_docsize", "requests_search_config", "requests_search_content",
                            SEARCH_TRGM_INDEX})

SQLITE_SEARCH_DDL = (
    # Only published answers are in it, with their unit, so a search (and its count) reads nothing else.
    "CREATE VIRTUAL TABLE IF NOT EXISTS requests_search USING fts5("
    "search_text, unit_code UNINDEXED, tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS requests_search_insert AFTER INSERT ON requests "
    "WHEN new.search_text IS NOT NULL AND new.published_at IS NOT NULL BEGIN "
    "INSERT INTO requests_search (rowid, search_text, unit_code) VALUES (new.id, new.search_text, new.unit_code); END",
    "CREATE TRIGGER IF NOT EXISTS requests_search_delete AFTER DELETE ON requests BEGIN "
    "DELETE FROM requests_search WHERE rowid = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS requests_search_update AFTER UPDATE OF search_text, published_at, unit_code "
    "ON requests BEGIN "
    "DELETE FROM requests_search WHERE rowid = old.id; "
    "INSERT INTO requests_search (rowid, search_text, unit_code) SELECT new.id, new.search_text, new.unit_code "
    "WHERE new.search_text IS NOT NULL AND new.published_at IS NOT NULL; END",
)
POSTGRESQL_SEARCH_DDL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX IF NOT EXISTS {SEARCH_TRGM_INDEX} ON requests USING gin (search_text gin_trgm_ops) "
    "WHERE search_text IS NOT NULL",
)

# -- bench branch: the supervisors' lists in their own order, read from an index -----------------
#
# list_instances sorts by (closed, deadline_at IS NULL, deadline_at, id DESC) and list_escalations by
# (resolved_at IS NOT NULL, raised_at DESC, id DESC): with these indexes on the same expressions a
# page of 200 reads 200 index entries, city-wide, for one unit or one status (the suspended cases),
# instead of sorting every open case.
Index("ix_requests_list", Request.closed, Request.deadline_at.is_(None), Request.deadline_at, Request.id.desc())
Index("ix_requests_unit_list", Request.unit_code, Request.closed, Request.deadline_at.is_(None),
      Request.deadline_at, Request.id.desc())
Index("ix_requests_status_list", Request.status, Request.closed, Request.deadline_at.is_(None),
      Request.deadline_at, Request.id.desc())
Index("ix_escalations_list", Escalation.resolved_at.is_not(None), Escalation.raised_at.desc(), Escalation.id.desc())
# The dashboard's escalated cases per unit: each unresolved escalation's case, from the index alone.
Index("ix_escalations_open", Escalation.resolved_at, Escalation.request_id)
Index("ix_escalations_unit_list", Escalation.unit_code, Escalation.resolved_at.is_not(None),
      Escalation.raised_at.desc(), Escalation.id.desc())

# PostgreSQL's planner takes columns to be independent unless told otherwise. Overdue and closed
# are not: every overdue case is open, so it guessed a tenth of a city's 25,000 overdue open cases,
# judged that reading ix_requests_list in order would pass 100,000 entries before the first page
# of them, and sorted all 25,000 instead (34 ms; 1 ms in order). Statistics over the two columns
# together (their most common combinations) put the guess right. Migration 0011 builds it on
# existing databases; SQLite has no such statistics and its planner takes the index in order.
REQUESTS_STATISTICS = "requests_overdue_closed"
# The open cases' board in one pass, on PostgreSQL (services/supervision.py, ``dashboard``): every
# column its counts read, the stuck ones' too, in one index of the open cases only. PostgreSQL took
# 20 ms a pass over a city's 100,000 open cases through ix_requests_open_unit and as long again
# through ix_requests_attention; over this one, both sets of counts take 10 ms. SQLite has no
# INCLUDE, and its two passes run beside each other instead. Migration 0012 builds it on existing
# databases; a schema comparison leaves it alone (UNMAPPED_OBJECTS), as it is not in the metadata.
OPEN_BOARD_INDEX = "ix_requests_open_board"
POSTGRESQL_PLANNER_DDL = (
    f"CREATE STATISTICS IF NOT EXISTS {REQUESTS_STATISTICS} (mcv, dependencies) ON overdue, closed FROM requests",
    f"CREATE INDEX IF NOT EXISTS {OPEN_BOARD_INDEX} ON requests (unit_code) INCLUDE (overdue, deadline_at, "
    "escalated, suspended_at, task_due_at, last_activity_at, work_pending, closed, id) WHERE closed = false",
)
# The open cases' board on SQLite (services/supervision.py, ``dashboard``): each unit's open, overdue and
# escalated cases, counted as the rows change by triggers on ``requests``, whoever writes them (a use
# case's flush, a Core statement, the stuck facts' refresh, the bench's generator). Counting them
# from ix_requests_open_unit took 17 ms a page for a city's 100,000 open cases; what the board
# cannot hold, the cases due soon (they depend on the instant), is read from that index for those
# units alone. SQLite serialises its writers, so the unit's counter row is never a point of
# contention; PostgreSQL's writers would wait on it, and count in one pass there instead
# (OPEN_BOARD_INDEX). Migration 0013 builds it on existing databases.
# Named for queries as the search's table is, not mapped: no use case writes it.
BOARD_TABLE = table("requests_board", column("unit_code"), column("open_cases"), column("overdue_cases"),
                    column("escalated_cases"))
_BOARD_ADD = ("INSERT INTO requests_board (unit_code, open_cases, overdue_cases, escalated_cases) "
              "{source} ON CONFLICT (unit_code) DO UPDATE SET open_cases = open_cases + 1, "
              "overdue_cases = overdue_cases + excluded.overdue_cases, "
              "escalated_cases = escalated_cases + excluded.escalated_cases;")
_BOARD_REMOVE = ("UPDATE requests_board SET open_cases = open_cases - 1, "
                 "overdue_cases = overdue_cases - (old.overdue IS 1), "
                 "escalated_cases = escalated_cases - (old.escalated IS 1) WHERE unit_code = old.unit_code{when};")
SQLITE_BOARD_DDL = (
    "CREATE TABLE IF NOT EXISTS requests_board (unit_code VARCHAR(32) NOT NULL PRIMARY KEY, "
    "open_cases INTEGER NOT NULL DEFAULT 0, overdue_cases INTEGER NOT NULL DEFAULT 0, "
    "escalated_cases INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS requests_board_insert AFTER INSERT ON requests WHEN new.closed IS 0 BEGIN "
    + _BOARD_ADD.format(source="VALUES (new.unit_code, 1, new.overdue IS 1, new.escalated IS 1)") + " END",
    "CREATE TRIGGER IF NOT EXISTS requests_board_delete AFTER DELETE ON requests WHEN old.closed IS 0 BEGIN "
    + _BOARD_REMOVE.format(when="") + " END",
    "CREATE TRIGGER IF NOT EXISTS requests_board_update AFTER UPDATE OF closed, overdue, escalated, unit_code "
    "ON requests WHEN old.closed IS NOT new.closed OR old.overdue IS NOT new.overdue "
    "OR old.escalated IS NOT new.escalated OR old.unit_code IS NOT new.unit_code BEGIN "
    + _BOARD_REMOVE.format(when=" AND old.closed IS 0") + " "
    # INSERT ... SELECT needs its WHERE before ON CONFLICT (SQLite's parsing of an upsert in a trigger).
    + _BOARD_ADD.format(source="SELECT new.unit_code, 1, new.overdue IS 1, new.escalated IS 1 WHERE new.closed IS 0")
    + " END",
)
# What the board holds, counted from the rows: the backfill, and the check that the two agree.
BOARD_FROM_ROWS = ("SELECT unit_code, count(*), sum(overdue IS 1), sum(escalated IS 1) FROM requests "
                   "WHERE closed IS 0 GROUP BY unit_code")
UNMAPPED_OBJECTS = SEARCH_OBJECTS | {OPEN_BOARD_INDEX, BOARD_TABLE.name}
for _statement in SQLITE_SEARCH_DDL + SQLITE_BOARD_DDL:
    event.listen(Request.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in POSTGRESQL_PLANNER_DDL:
    event.listen(Request.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
for _statement in POSTGRESQL_SEARCH_DDL:
    event.listen(Request.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
