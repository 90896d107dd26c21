"""The dashboard's month of acknowledgements from one index: the working days each took.

``ix_requests_acknowledged`` held (acknowledged_at, unit_code, received_at), and the dashboard
grouped the month's cases by their pairs of local dates to count working days between them: 7 ms
for a city on the month's 4th day, 50 ms on its last. It now holds ``ack_working_days``, which
every acknowledgement records (the reports sum the same), and the dashboard sums it per unit.

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_requests_acknowledged", table_name="requests")
    op.create_index("ix_requests_acknowledged", "requests", ["acknowledged_at", "unit_code", "ack_working_days"])


def downgrade() -> None:
    op.drop_index("ix_requests_acknowledged", table_name="requests")
    op.create_index("ix_requests_acknowledged", "requests", ["acknowledged_at", "unit_code", "received_at"])
