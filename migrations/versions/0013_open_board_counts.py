"""SQLite: each unit's open, overdue and escalated cases counted by triggers as the rows change.

The supervisors' board counted them from ``ix_requests_open_unit`` at every page, 17 ms for a
city's 100,000 open cases. ``requests_board`` holds the three counts per unit, kept by triggers on
``requests`` (an insert, a delete, an update of ``closed``, ``overdue``, ``escalated`` or
``unit_code``), whoever writes the rows. The backfill counts them from the rows once. PostgreSQL
counts in one pass over ``ix_requests_open_board`` instead (migration 0012): nothing is done
there. The same DDL is in engine/models.py for ``create_all``.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# As engine/models.py has it (a migration keeps its own copy: the models move on).
_ADD = ("INSERT INTO requests_board (unit_code, open_cases, overdue_cases, escalated_cases) "
        "{source} ON CONFLICT (unit_code) DO UPDATE SET open_cases = open_cases + 1, "
        "overdue_cases = overdue_cases + excluded.overdue_cases, "
        "escalated_cases = escalated_cases + excluded.escalated_cases;")
_REMOVE = ("UPDATE requests_board SET open_cases = open_cases - 1, "
           "overdue_cases = overdue_cases - (old.overdue IS 1), "
           "escalated_cases = escalated_cases - (old.escalated IS 1) WHERE unit_code = old.unit_code{when};")
CREATE = (
    "CREATE TABLE IF NOT EXISTS requests_board (unit_code VARCHAR(32) NOT NULL PRIMARY KEY, "
    "open_cases INTEGER NOT NULL DEFAULT 0, overdue_cases INTEGER NOT NULL DEFAULT 0, "
    "escalated_cases INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS requests_board_insert AFTER INSERT ON requests WHEN new.closed IS 0 BEGIN "
    + _ADD.format(source="VALUES (new.unit_code, 1, new.overdue IS 1, new.escalated IS 1)") + " END",
    "CREATE TRIGGER IF NOT EXISTS requests_board_delete AFTER DELETE ON requests WHEN old.closed IS 0 BEGIN "
    + _REMOVE.format(when="") + " END",
    "CREATE TRIGGER IF NOT EXISTS requests_board_update AFTER UPDATE OF closed, overdue, escalated, unit_code "
    "ON requests WHEN old.closed IS NOT new.closed OR old.overdue IS NOT new.overdue "
    "OR old.escalated IS NOT new.escalated OR old.unit_code IS NOT new.unit_code BEGIN "
    + _REMOVE.format(when=" AND old.closed IS 0") + " "
    + _ADD.format(source="SELECT new.unit_code, 1, new.overdue IS 1, new.escalated IS 1 WHERE new.closed IS 0")
    + " END",
)
BACKFILL = ("INSERT INTO requests_board (unit_code, open_cases, overdue_cases, escalated_cases) "
            "SELECT unit_code, count(*), sum(overdue IS 1), sum(escalated IS 1) FROM requests "
            "WHERE closed IS 0 GROUP BY unit_code")


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    op.execute(CREATE[0])
    op.execute("DELETE FROM requests_board")
    op.execute(BACKFILL)  # in the migration's transaction, before the triggers: nothing counted twice
    for statement in CREATE[1:]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for trigger in ("requests_board_insert", "requests_board_delete", "requests_board_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS requests_board")
