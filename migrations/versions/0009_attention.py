"""The supervisors' "stuck" facts on the request row, the indexes the dashboard reads, the search's by unit.

- ``requests.task_due_at``: the earliest due time of the case's open tasks;
- ``requests.work_pending``: an open task, an unfinished job (waiting, paused or failed), or the
  case waits for the requester's information;
- ``ix_requests_attention`` (unit, task_due_at, last_activity_at, work_pending, closed,
  suspended_at) over the open, not suspended cases only: "stuck now" is a test on this index
  alone (engine/attention.py; why the columns come in this order: engine/models.py).
- the dashboard's per-unit figures from indexes alone: ``ix_requests_open_unit`` gains
  ``deadline_at`` (due-soon counts), ``ix_requests_explained`` and ``ix_requests_acknowledged``
  (the month's explanations and acknowledgements: each had read all 1.1 million rows), and
  ``ix_escalations_open`` (resolved_at, request_id) for the escalated cases per unit;
- ``ix_requests_unit_published``: a unit's published answers newest first, which the search
  reads in that order when a word is in too many answers to look each up.

The backfill computes both from the task and job rows, writing only the rows whose value is not
the default (those with an open task or an unfinished job, or waiting for the requester: in
practice the open cases); a closed case keeps NULL and false.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LIVE_CASE = {"sqlite": "closed = 0 AND suspended_at IS NULL", "postgresql": "closed = false AND suspended_at IS NULL"}

BACKFILL = (
    "UPDATE requests SET task_due_at = (SELECT min(t.due_at) FROM tasks t "
    "WHERE t.request_id = requests.id AND t.status = 'open') "
    "WHERE id IN (SELECT request_id FROM tasks WHERE status = 'open' AND due_at IS NOT NULL)",
    "UPDATE requests SET work_pending = {true} "
    "WHERE id IN (SELECT request_id FROM tasks WHERE status = 'open') "
    "OR id IN (SELECT request_id FROM jobs WHERE status IN ('waiting', 'paused', 'incident') "
    "AND request_id IS NOT NULL) "
    "OR status = 'needs_info'",
)


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.add_column("requests", sa.Column("task_due_at", sa.DateTime(), nullable=True))
    op.add_column("requests", sa.Column("work_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    for statement in BACKFILL:
        op.execute(statement.format(true="1" if dialect == "sqlite" else "true"))
    op.create_index("ix_requests_attention", "requests",
                    ["unit_code", "task_due_at", "last_activity_at", "work_pending", "closed", "suspended_at"],
                    sqlite_where=sa.text(LIVE_CASE["sqlite"]), postgresql_where=sa.text(LIVE_CASE["postgresql"]),
                    postgresql_include=["id"])
    op.drop_index("ix_requests_open_unit", table_name="requests")
    op.create_index("ix_requests_open_unit", "requests", ["closed", "unit_code", "overdue", "deadline_at"])
    op.create_index("ix_requests_explained", "requests", ["explained_at", "unit_code", "acknowledged_at"])
    op.create_index("ix_requests_acknowledged", "requests", ["acknowledged_at", "unit_code", "received_at"])
    op.create_index("ix_escalations_open", "escalations", ["resolved_at", "request_id"])
    op.create_index("ix_requests_unit_published", "requests", ["unit_code", "published_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_unit_published", table_name="requests")
    op.drop_index("ix_escalations_open", table_name="escalations")
    op.drop_index("ix_requests_acknowledged", table_name="requests")
    op.drop_index("ix_requests_explained", table_name="requests")
    op.drop_index("ix_requests_open_unit", table_name="requests")
    op.create_index("ix_requests_open_unit", "requests", ["closed", "unit_code", "overdue"])
    op.drop_index("ix_requests_attention", table_name="requests")
    for name in ("work_pending", "task_due_at"):
        if op.get_context().dialect.name == "sqlite":
            # In place (SQLite 3.35+): a batch copy of the table would drop the search's triggers on it.
            op.execute(f"ALTER TABLE requests DROP COLUMN {name}")
        else:
            op.drop_column("requests", name)
