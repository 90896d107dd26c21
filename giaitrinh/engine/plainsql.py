"""Statements of plain columns sent straight through the driver: the inbox a lifecycle looks up
five times, a register's next number, a refresh of cases' facts.

A Core statement run on ``Connection.execute`` costs some 60 µs of SQLAlchemy's own work around
one SQLite runs in 10 to 50: the statement's cache key, the compiled cache, the execution context,
the result's metadata, and for an IN of a list, the list written into the SQL. ``rows`` (a select,
or a write with RETURNING) and ``execute`` (a write) do what those amount to for a statement they
have seen before: the SQL compiled by SQLAlchemy once per dialect and shape of its list parameters
(an ``expanding`` IN of 1 unit and of 3 are two SQL strings), the parameters converted by their
columns' types and put in the driver's order, the values read back converted by the columns' types
(``UtcDateTime``'s aware datetimes), as tuples. They run in the transaction of the connection or
session given, and the driver's errors are raised as SQLAlchemy's.

The statements are the module-level ones of the use cases, built once (``tasks._inbox_query``):
the cache is keyed by the statement object itself, so a statement built on each call would be
compiled on each call (and the cache is emptied when it holds 1,024). An entity's select gives
its columns as tuples, not objects: this is for plain columns. Nothing here tells the session
what a write changed: ``attention._refresh`` expires what it rewrote itself.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, NamedTuple

from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql import Select

# (statement, lengths of its list parameters) per dialect; at most this many statements a dialect.
_MAX_STATEMENTS = 1024


class _Read(NamedTuple):
    sql: str
    # One getter per driver parameter, in its order (positional drivers) or with its name.
    getters: tuple[tuple[str, Callable[[dict], Any]], ...]
    positional: bool
    results: tuple[Callable[[Any], Any] | None, ...]  # per column: its type's conversion, if any
    any_result: bool


_reads: "weakref.WeakKeyDictionary[Any, dict[tuple, _Read]]" = weakref.WeakKeyDictionary()
_reads_lock = threading.Lock()


def _getter(name: str, given: dict, expanded_from: dict[str, tuple[str, int]], constants: dict, processor):
    source = expanded_from.get(name)
    asked_for = name if source is None else source[0]
    if asked_for not in given:
        # A value written in the statement (``status == "open"``, ``action.in_((...))``): the same
        # on every call.
        value = constants[name]
        value = processor(value) if processor is not None else value
        return lambda params: value
    if source is None:
        fetch = lambda params, name=name: params[name]  # noqa: E731
    else:
        fetch = lambda params, source=source[0], index=source[1]: params[source][index]  # noqa: E731
    if processor is None:
        return fetch
    return lambda params: processor(fetch(params))


def _build(dialect, statement, params: dict) -> _Read:
    compiled = statement.compile(dialect=dialect)
    expanded = compiled.construct_expanded_state(params)
    expanded_from = {name: (source, index) for source, names in expanded.parameter_expansion.items()
                     for index, name in enumerate(names)}
    processors = expanded.processors
    if dialect.positional:
        names = expanded.positiontup
    else:
        names = tuple(expanded.parameters)
    getters = tuple((name, _getter(name, params, expanded_from, expanded.parameters, processors.get(name)))
                    for name in names)
    # The columns the statement returns, in order, with their types: a select's or a RETURNING's.
    results = tuple(entry.type.dialect_impl(dialect).result_processor(dialect, None)
                    for entry in compiled._result_columns)
    return _Read(expanded.statement, getters, dialect.positional, results, any(r is not None for r in results))


def _read_for(dialect, statement, params: dict) -> _Read:
    # Which list has how many values, by name: the same lengths given to two lists the other way
    # round are another SQL string.
    shape = tuple(sorted((name, len(value)) for name, value in params.items() if isinstance(value, (list, tuple))))
    key = (statement, shape)
    of_dialect = _reads.get(dialect)
    found = of_dialect.get(key) if of_dialect is not None else None
    if found is None:
        found = _build(dialect, statement, params)
        with _reads_lock:
            cache = _reads.setdefault(dialect, {})
            if len(cache) >= _MAX_STATEMENTS:
                cache.clear()  # statements built per call: compiled again, never an unbounded cache
            cache[key] = found
    return found


def _run(connection, statement, params: dict):
    """The driver's cursor once ``statement`` ran with ``params`` on ``connection``, its _Read and
    the dialect's driver error."""
    connection = connection.connection() if hasattr(connection, "get_bind") else connection
    dialect = connection.dialect
    read = _read_for(dialect, statement, params)
    try:
        if read.positional:
            bound = tuple(get(params) for _name, get in read.getters)
        else:
            bound = {name: get(params) for name, get in read.getters}
    except KeyError as exc:  # as Core says it of a statement it runs
        raise InvalidRequestError(f"A value is required for bind parameter {exc.args[0]!r}") from None
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(read.sql, bound)
    except dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy's, as Core's execute would
        cursor.close()
        raise DBAPIError.instance(read.sql, bound, exc, dialect.loaded_dbapi.Error) from exc
    return cursor, read, dialect.loaded_dbapi.Error


def execute(connection, statement, params: dict) -> int:
    """Run a write that returns no rows (an UPDATE of many cases' facts); the rows it matched."""
    if getattr(statement, "_returning", ()) or isinstance(statement, Select):
        raise TypeError("plainsql.execute runs a write without RETURNING: rows() reads")
    cursor, _read, _error = _run(connection, statement, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def rows(connection, statement, params: dict) -> list[tuple]:
    """The rows of ``statement`` with ``params``, on ``connection`` (a Core connection or a session,
    in its transaction), as tuples of the values the columns' types give back. ``statement`` is a
    ``Select``, or a write whose RETURNING gives rows (a register's next number)."""
    if not isinstance(statement, Select) and not getattr(statement, "_returning", ()):
        raise TypeError("plainsql.rows runs a Select, or a write with RETURNING")
    cursor, read, driver_error = _run(connection, statement, params)
    try:
        fetched = cursor.fetchall()
    except driver_error as exc:  # SQLite runs a RETURNING write as it is fetched
        raise DBAPIError.instance(read.sql, None, exc, driver_error) from exc
    finally:
        cursor.close()
    if not read.any_result:
        return [tuple(row) for row in fetched]
    results = read.results
    return [tuple(value if convert is None or value is None else convert(value)
                  for convert, value in zip(results, row)) for row in fetched]
