"""Security and privacy: sign-in throttling, sign out everywhere, redaction rules, retention.

Audit events get a hash scheme: rows written before this revision keep scheme 1 (the
payload itself is chained); new rows use scheme 2 (a digest of the payload is chained),
which lets retention erase personal data from old events without breaking the chain.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hash_scheme", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("payload_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))
    op.create_table(
        "redaction_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(length=500), nullable=False),
        sa.Column("is_regex", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("redaction_rules")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("payload_sha256")
        batch_op.drop_column("hash_scheme")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")
