"""Supervision: extra task candidates, saved instance filters, an index for inactive cases.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_open_activity", "requests", ["closed", "last_activity_at"])
    op.create_table(
        "task_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "username"),
    )
    op.create_index("ix_task_candidates_task_id", "task_candidates", ["task_id"])
    op.create_index("ix_task_candidates_username", "task_candidates", ["username"])
    op.create_table(
        "saved_filters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("shared_with_role", sa.String(length=32), nullable=True),
        sa.Column("unit_code", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["unit_code"], ["units.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_saved_filters_owner", "saved_filters", ["owner"])
    op.create_index("ix_saved_filters_shared_with_role", "saved_filters", ["shared_with_role"])


def downgrade() -> None:
    op.drop_index("ix_saved_filters_shared_with_role", table_name="saved_filters")
    op.drop_index("ix_saved_filters_owner", table_name="saved_filters")
    op.drop_table("saved_filters")
    op.drop_index("ix_task_candidates_username", table_name="task_candidates")
    op.drop_index("ix_task_candidates_task_id", table_name="task_candidates")
    op.drop_table("task_candidates")
    op.drop_index("ix_requests_open_activity", table_name="requests")
