"""The tree of units: a unit and the units above it, whose people also work on its cases."""
from __future__ import annotations

import weakref
from time import monotonic
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Unit


def ancestors(session: Session, unit_code: str) -> list[str]:
    """The unit and the units above it, nearest first, read from the database now."""
    chain: list[str] = []
    code: str | None = unit_code
    while code and code not in chain:
        chain.append(code)
        with session.no_autoflush:
            unit = session.get(Unit, code)
        code = unit.parent_code if unit else None
    return chain


# Per database engine: (when read, unit code -> parent code). Units are not re-parented through
# the application; as with their names (services._common.unit_name) a change made by hand
# shows within a minute. A unit missing from the map (created since) is looked up afresh.
_TREE_SECONDS = 60.0
_trees: "weakref.WeakKeyDictionary[Any, tuple[float, dict[str, str | None]]]" = weakref.WeakKeyDictionary()


def _parents(session: Session) -> dict[str, str | None]:
    engine = session.get_bind()
    cached = _trees.get(engine)
    if cached is None or monotonic() - cached[0] >= _TREE_SECONDS:
        with session.no_autoflush:
            parents = dict(session.execute(select(Unit.code, Unit.parent_code)).all())
        cached = (monotonic(), parents)
        _trees[engine] = cached
    return cached[1]


def exists(session: Session, unit_code: str) -> bool:
    """Whether the unit exists: from the tree read at most a minute ago, else asked now (a unit
    created since). Units are never deleted through the application."""
    if unit_code in _parents(session):
        return True
    with session.no_autoflush:
        return session.get(Unit, unit_code) is not None


def ancestors_cached(session: Session, unit_code: str) -> list[str]:
    """``ancestors`` from the unit tree this process read at most a minute ago (hot paths: escalations)."""
    parents = _parents(session)
    if unit_code not in parents:
        return ancestors(session, unit_code)
    chain: list[str] = []
    code: str | None = unit_code
    while code and code not in chain:
        chain.append(code)
        code = parents.get(code)
    return chain
