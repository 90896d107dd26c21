"""Indexes for the lists at city scale (1,000,000 requests), found by bench/inbox.py and bench/timers_scale.py.

- ``ix_requests_open_unit`` (closed, unit_code, overdue): the dashboard's counts of open and
  overdue cases, city-wide or for a unit, from the index alone.
- ``ix_requests_list``, ``ix_requests_unit_list``, ``ix_requests_status_list``, ``ix_escalations_list``,
  ``ix_escalations_unit_list``: the supervisors' lists in the order they sort by (including the
  ``IS NULL`` terms of that order), so a page reads its rows in order and stops.
- The published-answer search: an FTS5 trigram table on SQLite (the published answers' search
  text and unit, kept in step by triggers, filled here from the rows already published) and a pg_trgm GIN index on
  PostgreSQL, so ``search_text LIKE '%word%'`` no longer scans every request. The same DDL is
  in ``engine/models.py`` for ``create_all``.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_SEARCH = (
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
    # The answers published before this revision.
    "INSERT INTO requests_search (rowid, search_text, unit_code) SELECT id, search_text, unit_code FROM requests "
    "WHERE search_text IS NOT NULL AND published_at IS NOT NULL",
)
POSTGRESQL_SEARCH = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_requests_search_trgm ON requests USING gin (search_text gin_trgm_ops) "
    "WHERE search_text IS NOT NULL",
)


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index("ix_requests_open_unit", ["closed", "unit_code", "overdue"], unique=False)
    # The supervisors' lists in the order they sort by (expressions included), city-wide and per unit.
    op.create_index("ix_requests_list", "requests",
                    ["closed", sa.text("(deadline_at IS NULL)"), "deadline_at", sa.text("id DESC")])
    op.create_index("ix_requests_unit_list", "requests",
                    ["unit_code", "closed", sa.text("(deadline_at IS NULL)"), "deadline_at", sa.text("id DESC")])
    op.create_index("ix_requests_status_list", "requests",
                    ["status", "closed", sa.text("(deadline_at IS NULL)"), "deadline_at", sa.text("id DESC")])
    op.create_index("ix_escalations_list", "escalations",
                    [sa.text("(resolved_at IS NOT NULL)"), sa.text("raised_at DESC"), sa.text("id DESC")])
    op.create_index("ix_escalations_unit_list", "escalations",
                    ["unit_code", sa.text("(resolved_at IS NOT NULL)"), sa.text("raised_at DESC"), sa.text("id DESC")])
    statements = SQLITE_SEARCH if op.get_context().dialect.name == "sqlite" else POSTGRESQL_SEARCH
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for trigger in ("requests_search_insert", "requests_search_delete", "requests_search_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS requests_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_requests_search_trgm")
    for name, table in (("ix_escalations_unit_list", "escalations"), ("ix_escalations_list", "escalations"),
                        ("ix_requests_status_list", "requests"), ("ix_requests_unit_list", "requests"),
                        ("ix_requests_list", "requests")):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_open_unit")
