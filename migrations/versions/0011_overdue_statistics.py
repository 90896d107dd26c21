"""PostgreSQL statistics over ``requests.overdue`` and ``requests.closed`` together.

Every overdue case is open, and PostgreSQL's planner, taking the two columns as independent,
guessed a tenth of a city's overdue open cases: the supervisors' overdue list then sorted all of
them (34 ms at 25,000) instead of reading ``ix_requests_list`` in order (1 ms). The statistics
object (engine/models.py, ``POSTGRESQL_PLANNER_DDL``) is filled by the next ANALYZE, run here
on the table. SQLite has nothing of the kind: nothing is done there.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# As engine/models.py has it (a migration keeps its own copy: the models move on).
STATISTICS = "requests_overdue_closed"
CREATE = f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (mcv, dependencies) ON overdue, closed FROM requests"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(CREATE)
    op.execute("ANALYZE requests")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
