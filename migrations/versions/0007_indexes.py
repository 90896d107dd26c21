"""Indexes for the lists at city scale (1,000,000 requests), found by bench/inbox.py and bench/timers_scale.py.

- ``ix_requests_unit_open`` (unit_code, closed, overdue, deadline_at): a unit's open cases, its
  overdue ones and its register, counted and listed by the supervisors' dashboard without
  reading the table.
- The published-answer search: an FTS5 trigram table on SQLite (no copy of the text, kept in
  step by triggers, filled here from the rows already published) and a pg_trgm GIN index on
  PostgreSQL, so ``search_text LIKE '%word%'`` no longer scans every request. The same DDL is
  in ``engine/models.py`` for ``create_all``.

Revision ID: 0007
Revises: 0003
"""
from alembic import op

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS requests_search USING fts5("
    "search_text, content='requests', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS requests_search_insert AFTER INSERT ON requests "
    "WHEN new.search_text IS NOT NULL BEGIN "
    "INSERT INTO requests_search (rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS requests_search_delete AFTER DELETE ON requests "
    "WHEN old.search_text IS NOT NULL BEGIN "
    "INSERT INTO requests_search (requests_search, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS requests_search_update AFTER UPDATE OF search_text ON requests BEGIN "
    "INSERT INTO requests_search (requests_search, rowid, search_text) "
    "SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL; "
    "INSERT INTO requests_search (rowid, search_text) "
    "SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL; END",
    # The rows published before this revision (an external-content table indexes what it is told).
    "INSERT INTO requests_search (rowid, search_text) SELECT id, search_text FROM requests "
    "WHERE search_text IS NOT NULL",
)
POSTGRESQL_SEARCH = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_requests_search_trgm ON requests USING gin (search_text gin_trgm_ops) "
    "WHERE search_text IS NOT NULL",
)


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index("ix_requests_unit_open", ["unit_code", "closed", "overdue", "deadline_at"], unique=False)
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
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_unit_open")
