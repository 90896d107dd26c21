"""The "escalated" fact on the request row, so the dashboard counts escalated cases per unit in its one pass.

- ``requests.escalated``: the case has an escalation not yet resolved (engine/attention.py keeps
  it from the escalation rows, in the same transaction as they change);
- ``ix_requests_open_unit`` gains it: open, overdue, due-soon and escalated cases per unit are
  counted from that index alone. Joining the open escalations to their cases had cost 30 ms of
  the city's dashboard;
- ``ix_requests_closed`` (closed, closed_at, unit_code): the cases closed since an instant, so the
  "all" count reads only the recent closings (services/supervision.py, ``count_all``).

The backfill flags the cases with an unresolved escalation; every other case keeps false.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.add_column("requests", sa.Column("escalated", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE requests SET escalated = {true} WHERE id IN "
               "(SELECT request_id FROM escalations WHERE resolved_at IS NULL)"
               .format(true="1" if dialect == "sqlite" else "true"))
    op.drop_index("ix_requests_open_unit", table_name="requests")
    op.create_index("ix_requests_open_unit", "requests", ["closed", "unit_code", "overdue", "deadline_at", "escalated"])
    op.create_index("ix_requests_closed", "requests", ["closed", "closed_at", "unit_code"])


def downgrade() -> None:
    op.drop_index("ix_requests_closed", table_name="requests")
    op.drop_index("ix_requests_open_unit", table_name="requests")
    op.create_index("ix_requests_open_unit", "requests", ["closed", "unit_code", "overdue", "deadline_at"])
    if op.get_context().dialect.name == "sqlite":
        # In place (SQLite 3.35+): a batch copy of the table would drop the search's triggers on it.
        op.execute("ALTER TABLE requests DROP COLUMN escalated")
    else:
        op.drop_column("requests", "escalated")
