"""PostgreSQL: one covering index of the open cases for the supervisors' board.

The board counted a city's 100,000 open cases twice, through ``ix_requests_open_unit`` (open,
overdue, due-soon, escalated) and through ``ix_requests_attention`` (stuck), 20 ms each on
PostgreSQL. ``ix_requests_open_board`` holds every column both read, for the open cases only,
so one pass gives both (10 ms). SQLite has no INCLUDE: nothing is done there (its two passes
run beside each other). The same DDL is in engine/models.py for ``create_all``.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# As engine/models.py has it (a migration keeps its own copy: the models move on).
INDEX = "ix_requests_open_board"
CREATE = (f"CREATE INDEX IF NOT EXISTS {INDEX} ON requests (unit_code) INCLUDE (overdue, deadline_at, "
          "escalated, suspended_at, task_due_at, last_activity_at, work_pending, closed, id) WHERE closed = false")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
