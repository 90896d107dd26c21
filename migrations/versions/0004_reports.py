"""Reports: the typed facts the monthly report and the yearly evaluation count.

``requests`` gets the acknowledgement decision and refusal ground (they lived only in the
``outcome`` JSON, which a withdrawal overwrites), the working days the acknowledgement took,
the explanation deadline in force when the explanation was issued and the days it took; and
indexes for a unit's cases by month of receipt and its ratings. Rows written before this
revision are filled in from what they already hold (outcome, deadlines, the receive task's form
data and the audit trail of suspensions), with the national calendar and the local overrides.

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LOCAL = timezone(timedelta(hours=7))
_DECISIONS = {"accepted": "accept", "refused": "refuse", "redirected": "redirect",
              "accept": "accept", "refuse": "refuse", "redirect": "redirect"}


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("refusal_ground", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ack_working_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("explain_due_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("explain_days", sa.Integer(), nullable=True))
    op.create_index("ix_requests_unit_received", "requests", ["unit_code", "received_at"])
    op.create_index("ix_requests_unit_rated", "requests", ["unit_code", "rated_at"])
    _backfill()


def _local_date(value: datetime):
    return value.replace(tzinfo=timezone.utc).astimezone(_LOCAL).date()


def _backfill() -> None:
    from giaitrinh.engine.calendar import WorkingCalendar

    bind = op.get_bind()
    meta = sa.MetaData()
    requests = sa.Table("requests", meta, sa.Column("id", sa.Integer), sa.Column("status", sa.String),
                        sa.Column("outcome", sa.JSON), sa.Column("deadlines", sa.JSON),
                        sa.Column("received_at", sa.DateTime), sa.Column("acknowledged_at", sa.DateTime),
                        sa.Column("explained_at", sa.DateTime), sa.Column("decision", sa.String),
                        sa.Column("refusal_ground", sa.String), sa.Column("ack_working_days", sa.Integer),
                        sa.Column("explain_due_at", sa.DateTime), sa.Column("explain_days", sa.Integer))
    tasks = sa.Table("tasks", meta, sa.Column("request_id", sa.Integer), sa.Column("step", sa.String),
                     sa.Column("status", sa.String), sa.Column("completed_at", sa.DateTime),
                     sa.Column("data", sa.JSON))
    events = sa.Table("audit_events", meta, sa.Column("id", sa.Integer), sa.Column("request_id", sa.Integer),
                      sa.Column("action", sa.String), sa.Column("at", sa.DateTime))
    days = sa.Table("calendar_days", meta, sa.Column("day", sa.Date), sa.Column("kind", sa.String),
                    sa.Column("note", sa.String))
    calendar = WorkingCalendar()
    for day, kind, note in bind.execute(sa.select(days.c.day, days.c.kind, days.c.note)):
        (calendar.days_off if kind == "day_off" else calendar.working_days)[day] = note or ""
    receive_decisions = {}
    for request_id, data in bind.execute(
            sa.select(tasks.c.request_id, tasks.c.data).where(tasks.c.step == "receive", tasks.c.status == "completed")
            .order_by(tasks.c.completed_at)):
        decision = _DECISIONS.get((data or {}).get("decision"))
        if decision:
            receive_decisions[request_id] = (decision, (data or {}).get("ground"))
    suspensions = {}
    for request_id, action, at in bind.execute(
            sa.select(events.c.request_id, events.c.action, events.c.at)
            .where(events.c.action.in_(("suspended", "resumed"))).order_by(events.c.id)):
        suspensions.setdefault(request_id, []).append((action, at))
    rows = bind.execute(sa.select(requests).where(requests.c.acknowledged_at.is_not(None))).mappings().all()
    for row in rows:
        values = {}
        decision, ground = receive_decisions.get(row["id"], (None, None))
        outcome = row["outcome"] or {}
        decision = decision or _DECISIONS.get(outcome.get("decision")) or _DECISIONS.get(row["status"])
        if decision is None and row["acknowledged_at"] is not None:
            decision = "accept"  # acknowledged and neither refused nor redirected: it was accepted
        values["decision"] = decision
        if decision == "refuse":
            values["refusal_ground"] = (ground or outcome.get("ground") or None)
        values["ack_working_days"] = max(0, calendar.working_days_between(_local_date(row["received_at"]),
                                                                          _local_date(row["acknowledged_at"])))
        if row["explained_at"] is not None:
            due = (row["deadlines"] or {}).get("explain_by")
            if due:
                values["explain_due_at"] = datetime.fromisoformat(due).astimezone(timezone.utc).replace(tzinfo=None)
            stood, since = 0, None
            for action, at in suspensions.get(row["id"], []):
                if action == "suspended" and since is None:
                    since = at
                elif action == "resumed" and since is not None:
                    stood += (_local_date(at) - _local_date(since)).days
                    since = None
            values["explain_days"] = max(0, (_local_date(row["explained_at"]) - _local_date(row["acknowledged_at"])).days
                                         - stood)
        bind.execute(requests.update().where(requests.c.id == row["id"]).values(**values))


def downgrade() -> None:
    op.drop_index("ix_requests_unit_rated", table_name="requests")
    op.drop_index("ix_requests_unit_received", table_name="requests")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("explain_days")
        batch_op.drop_column("explain_due_at")
        batch_op.drop_column("ack_working_days")
        batch_op.drop_column("refusal_ground")
        batch_op.drop_column("decision")
