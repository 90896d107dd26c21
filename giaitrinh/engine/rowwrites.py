"""The rows every step of a case writes, sent straight through the driver at each flush.

Each step writes the same few rows: the request, its tasks, its workflow state, its timer jobs,
a notification, a document, the audit chain's head. Through the unit of work each of those
statements cost about ten times what SQLite takes to run it: finding the changed attributes,
building a statement for them, finding it in the compiled cache, Core's execution context and
result around the cursor. This module's ``before_flush`` listener, registered after attention's
(which must see the changes first), writes them itself: one statement per table and set of columns, compiled once per dialect by SQLAlchemy, its
parameters converted by the columns' own types, run on the session's DBAPI connection inside its
transaction. The objects are then registered as written, the way the unit of work registers its
own writes, so it finds nothing left to do for them, and a rollback expires them as it would.

- New rows get their column defaults and, for an integer key, the number the database gives.
- Versioned rows (workflow states, jobs, emails) are updated only at the version read: a
  concurrent writer's change is the unit of work's own ``StaleDataError`` (a 409 to the caller).
- Left to the unit of work, as before: deletes; rows of other tables; an object with a
  relationship set, a new primary key (whose identity it moves) or a default only the database
  knows; a row naming a table the unit of work still has rows to insert into, and a table's new
  rows after one it took (it orders and numbers those); any change inside a savepoint.
- A failed write ends the flush as the unit of work's failure does: its subtransaction rolled
  back, the driver's error raised as SQLAlchemy's (``db.lost_race`` and the API's 409 read it).
- Column defaults that read the statement's execution context are not supported (none is used).

The registration calls are the unit of work's own (``Session._register_persistent``,
``InstanceState._commit_all``); ``tests/test_rowwrites.py`` compares what both ways write.
"""
from __future__ import annotations

import threading
import weakref
from operator import itemgetter
from typing import Any, Callable, NamedTuple

from sqlalchemy import and_, bindparam, event, insert, update
from sqlalchemy.orm import Mapper, Session, class_mapper
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.state import InstanceState

from . import attention  # its before_flush listener must see the changes before this one writes them
from .models import AuditHead, Document, Job, Notification, OutboxMessage, Request, Task, WorkflowState

# In the order their new rows are inserted: a row's case before the rows that name it.
HOT_MODELS = (Request, WorkflowState, Task, Job, Notification, OutboxMessage, Document, AuditHead)

# Off, every row goes through the unit of work: the tests compare what both write.
enabled = True


class _Columns(NamedTuple):
    """What a hot model's rows are written by: its plain column attributes, key and version."""

    rank: int
    columns: dict[str, Any]  # attribute key -> its table column
    primary_key: tuple[Any, ...]
    generated_key: str | None  # the attribute of an integer key the database numbers
    version_key: str | None
    version_column: Any
    references: frozenset[str]  # the tables its foreign keys name
    key_names: frozenset[str]  # the attributes of its primary key
    reference_names: frozenset[str]  # the attributes of its foreign keys


def _columns_of(rank: int, mapper: Mapper) -> _Columns:
    columns = {prop.key: prop.columns[0] for prop in mapper.column_attrs if len(prop.columns) == 1}
    version = mapper.version_id_col
    version_key = next((key for key, column in columns.items() if column is version), None) if version is not None else None
    table = mapper.local_table
    generated = table.autoincrement_column
    generated_key = next((key for key, column in columns.items() if column is generated), None)
    references = frozenset(fk.column.table.name for fk in table.foreign_keys)
    key_names = frozenset(key for key, column in columns.items() if column.primary_key)
    reference_names = frozenset(key for key, column in columns.items() if column.foreign_keys)
    return _Columns(rank, columns, tuple(mapper.primary_key), generated_key, version_key, version, references,
                    key_names, reference_names)


_MODELS = {model: _columns_of(rank, class_mapper(model)) for rank, model in enumerate(HOT_MODELS)}


class _Statement(NamedTuple):
    sql: str
    ordered: Callable[[dict], tuple] | None  # the parameters in the order a positional driver takes them
    processors: dict[str, Callable[[Any], Any]]  # parameter -> its column type's conversion
    returns_key: bool  # an INSERT that returns the number the database gave its row (SQLite's is on the cursor)


# Per dialect (each engine has its own): the statements compiled for it.
_statements: "weakref.WeakKeyDictionary[Any, dict[tuple, _Statement]]" = weakref.WeakKeyDictionary()
_statements_lock = threading.Lock()


def _compiled(dialect, statement, returns_key: bool = False) -> _Statement:
    compiled = statement.compile(dialect=dialect)
    processors = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    ordered = None
    if dialect.positional:
        names = tuple(compiled.positiontup)
        ordered = itemgetter(*names) if len(names) > 1 else (lambda params: (params[names[0]],))
    return _Statement(compiled.string, ordered, processors, returns_key)


def _cached(dialect, key: tuple, build: Callable[[], _Statement]) -> _Statement:
    of_dialect = _statements.get(dialect)
    found = of_dialect.get(key) if of_dialect is not None else None
    if found is None:
        found = build()
        with _statements_lock:
            _statements.setdefault(dialect, {})[key] = found
    return found


def _update_statement(dialect, model, keys: tuple[str, ...]) -> _Statement:
    def build() -> _Statement:
        info = _MODELS[model]
        where = [column == bindparam(f"pk_{column.key}", type_=column.type) for column in info.primary_key]
        values = {info.columns[key]: bindparam(key, type_=info.columns[key].type) for key in keys}
        if info.version_key is not None:
            where.append(info.version_column == bindparam("version_was", type_=info.version_column.type))
            values[info.version_column] = bindparam("version_now", type_=info.version_column.type)
        return _compiled(dialect, update(model.__table__).where(and_(*where)).values(values))
    return _cached(dialect, ("update", model, keys), build)


def _insert_statement(dialect, table, keys: tuple[str, ...], wants_key: bool) -> _Statement:
    """An INSERT of ``keys`` into ``table``; with ``wants_key``, the number the database gives the row
    is read back (returned, but on SQLite found on the cursor)."""
    def build() -> _Statement:
        statement = insert(table).values({table.c[key]: bindparam(key, type_=table.c[key].type) for key in keys})
        returns_key = wants_key and dialect.name != "sqlite"
        if returns_key:
            statement = statement.returning(table.autoincrement_column)
        return _compiled(dialect, statement, returns_key)
    return _cached(dialect, ("insert", table, keys, wants_key), build)


def _driver(session: Session):
    """The session's dialect and the DBAPI connection its transaction runs on."""
    connection = session.connection()
    return connection.dialect, connection.connection.driver_connection


def _bound(statement: _Statement, params: dict[str, Any]):
    """The parameters as the driver takes them: converted by their columns' types, in its order."""
    for name, processor in statement.processors.items():
        params[name] = processor(params[name])
    return statement.ordered(params) if statement.ordered else params


def _execute(connection, statement: _Statement, params: dict[str, Any]):
    return connection.execute(statement.sql, _bound(statement, params))


def _new_key(cursor, statement: _Statement):
    return cursor.fetchone()[0] if statement.returns_key else cursor.lastrowid


def _python_default(column) -> tuple[bool, Any]:
    """(True, value) for a column whose default Python gives, as Core's INSERT computes it."""
    default = column.default
    if default is not None and default.is_scalar:
        return True, default.arg
    if default is not None and default.is_callable:
        return True, default.arg(None)
    return False, None


def _changes(state: InstanceState, info: _Columns) -> dict[str, Any] | None:
    """The columns set since the row was read or last written and their new values; None when
    something the unit of work must handle changed (a relationship, the version itself, the
    primary key, whose new identity it moves in the identity map)."""
    values = state.dict
    if info.version_key is not None and info.version_key not in values:
        return None  # the version was expired: the unit of work reads it back first
    changes = {}
    for key, before in state.committed_state.items():
        if key not in info.columns or key == info.version_key or key in info.key_names or key not in values:
            return None
        now = values[key]
        if before is NO_VALUE or not _equal(before, now):
            changes[key] = now
    return changes


def _equal(before, now) -> bool:
    """The unit of work's test of a scalar attribute left as it was (``==``)."""
    try:
        return bool(before == now)
    except Exception:  # noqa: BLE001 - values that cannot be compared are changed
        return False


def _update(session: Session, connection, dialect, state: InstanceState, info: _Columns,
            changes: dict[str, Any]) -> None:
    keys = tuple(sorted(changes))
    statement = _update_statement(dialect, state.class_, keys)
    params = dict(changes)
    for column, value in zip(info.primary_key, state.key[1]):
        params[f"pk_{column.key}"] = value
    if info.version_key is not None:
        was = state.dict[info.version_key]
        params["version_was"], params["version_now"] = was, was + 1
    cursor = _execute(connection, statement, params)
    if cursor.rowcount != 1:
        raise StaleDataError(f"UPDATE statement on table '{state.class_.__table__.name}' expected to update "
                             f"1 row(s); {cursor.rowcount} were matched.")
    if info.version_key is not None:
        state.dict[info.version_key] = was + 1
    # Written: the object holds what the row holds, and the unit of work skips it. Registered as
    # changed in the transaction, as the unit of work's own writes are, for a rollback to expire it.
    state._commit_all(state.dict, session.identity_map)
    session._register_altered((state,))


def _insert_values(state: InstanceState, info: _Columns) -> dict[str, Any] | None:
    """A new object's row as the unit of work would insert it (column defaults applied); None when
    it is the unit of work's to insert (a relationship set, a default only the database knows)."""
    values = state.dict
    for key in state.committed_state:
        if key not in info.columns:
            return None
    row, filled = {}, {}
    for key, column in info.columns.items():
        value = values.get(key)
        if key == info.version_key:
            filled[key] = row[key] = 1  # the unit of work's first version, whatever the object held
            continue
        if value is None and key in values and column.type.should_evaluate_none:
            row[key] = None  # a JSON null, as the unit of work writes it
            continue
        if value is None:
            if column.default is not None:
                known, value = _python_default(column)
                if not known:
                    return None
            elif column.server_default is not None:
                return None
            elif key == info.generated_key:
                continue  # numbered by the database
            elif not column.nullable:
                return None  # the unit of work's error to raise (or its relationship to fill)
            else:
                continue  # NULL
            filled[key] = value
        row[key] = value
    values.update(filled)  # the object holds its defaults, as after the unit of work's insert
    return row


def _insert(session: Session, connection, dialect, state: InstanceState, info: _Columns,
            row: dict[str, Any]) -> None:
    numbered = info.generated_key is not None and info.generated_key not in row
    statement = _insert_statement(dialect, state.class_.__table__, tuple(row), numbered)
    cursor = _execute(connection, statement, dict(row))
    if numbered:
        state.dict[info.generated_key] = _new_key(cursor, statement)
    # Persistent now, as the unit of work would make it (its identity, pending_to_persistent).
    session._register_persistent({state})


def insert_rows(session: Session, table, rows: list[dict[str, Any]]) -> int | None:
    """Insert rows no use case changes afterwards (audit events, emails, notices), bypassing the
    ORM and Core's statement handling as the flush's writes do: many rows in one ``executemany``.
    Columns a row leaves out get their defaults, as with Core's INSERT. Returns the number the
    database gave the row when there is one row and the table numbers its rows."""
    if not rows:
        return None
    connection = session.connection()
    if not enabled or len({frozenset(row) for row in rows}) > 1:  # rows of different keys: Core's error
        result = connection.execute(table.insert(), rows)
        return result.inserted_primary_key[0] if len(rows) == 1 and table.autoincrement_column is not None else None
    dialect, driver = _driver(session)
    keys = tuple(dict.fromkeys(key for row in rows for key in row))
    keys += tuple(column.key for column in table.columns if column.key not in keys and column.default is not None
                  and (column.default.is_scalar or column.default.is_callable))
    generated = table.autoincrement_column
    returns_key = len(rows) == 1 and generated is not None and generated.key not in keys
    full = [_with_defaults(table, keys, row) for row in rows]
    statement = _insert_statement(dialect, table, keys, returns_key)
    try:
        if len(full) == 1:
            cursor = _execute(driver, statement, full[0])
            return _new_key(cursor, statement) if returns_key else None
        driver.cursor().executemany(statement.sql, [_bound(statement, params) for params in full])
        return None
    except dialect.dbapi.Error as exc:  # raised as SQLAlchemy's, as Core's INSERT would
        raise DBAPIError.instance(statement.sql, None, exc, dialect.dbapi.Error) from exc


def _with_defaults(table, keys: tuple[str, ...], row: dict[str, Any]) -> dict[str, Any]:
    full = dict(row)
    for key in keys:
        if key not in full:
            full[key] = _python_default(table.c[key])[1]
    return full


@event.listens_for(Session, "before_flush")
def _write_hot_rows(session: Session, _context, _instances) -> None:
    if not enabled or session.in_nested_transaction():
        return  # a savepoint's rollback restores only what the unit of work wrote
    try:
        _write(session)
    except Exception as exc:
        # As a failed flush of the unit of work: its subtransaction rolled back (the session
        # must be rolled back before it is used again), the driver's error wrapped as Core's.
        session._autobegin_t()._begin().rollback(_capture_exception=True)
        driver_error = session.get_bind().dialect.dbapi.Error
        if isinstance(exc, driver_error):  # a lost race, a lost connection: db.lost_race and the 409 read Core's
            raise DBAPIError.instance(None, None, exc, driver_error) from exc
        raise


def _write(session: Session) -> None:
    connection = dialect = None
    settled = False  # an object found unchanged and marked so
    new = [state for state in session._new if state.class_ in _MODELS]
    waiting: set[str] = set()
    if new:
        # Inserted in the tables' order, each table in the order its objects were added; a row
        # that names a table the unit of work still has rows to insert into is left to it as well.
        waiting = {state.class_.__table__.name for state in session._new if state.class_ not in _MODELS}
        new.sort(key=lambda state: (_MODELS[state.class_].rank, state.insert_order))
        for state in new:
            info = _MODELS[state.class_]
            table = state.class_.__table__.name
            # A table's rows after one left to the unit of work go with it, numbered in their order.
            row = None if table in waiting or info.references & waiting else _insert_values(state, info)
            if row is None:
                waiting.add(table)
                continue
            if connection is None:
                dialect, connection = _driver(session)
            _insert(session, connection, dialect, state, info, row)
    deleted = session._deleted
    for state in list(session.identity_map._modified):
        info = _MODELS.get(state.class_)
        if info is None or state.key is None or state in deleted or not state.committed_state:
            continue
        changes = _changes(state, info)
        if changes is None or (waiting and info.references & waiting and not info.reference_names.isdisjoint(changes)):
            continue  # the unit of work's, or a row pointed at one it has still to insert
        if not changes:  # set to what it was: nothing to write, as for the unit of work
            state._commit_all(state.dict, session.identity_map)
            settled = True
            continue
        if connection is None:
            dialect, connection = _driver(session)
        _update(session, connection, dialect, state, info, changes)
    if (connection is not None or settled) and not (session._new or session._deleted or session.identity_map._modified):
        # Nothing left for the unit of work, which then skips its after_flush listeners.
        attention.written_before_flush(session)
