"""ORM objects built from rows read through the driver: the case a completion reads before it runs.

A completion reads its task with the request, the workflow state, the case's other open tasks,
its waiting jobs and the audit chain's head: one statement, which SQLite runs in 50 µs and the
ORM's execution took 250 around (its compiled cache, its execution context, a loading function
built for each entity at every execution, the identity map). ``rows`` runs a select of the
models' table columns through ``plainsql`` (values converted by the columns' types) and makes
each row's objects persistent in the session the way the ORM's loading does for a row it has
not seen: a new instance with its identity, attached to the session, its columns loaded, its
many-to-one ``request`` set to the request of the same row when the statement reads it. An
identity the session already holds gives the object it holds, unchanged (no populate_existing).
A model's part of a row that is all NULL (an outer join that found nothing) is None.

``new`` makes the new objects a step adds (its tasks, timer jobs, document, messages) the way
the declarative constructor does, without an attribute event for each value: the constructor's
``setattr`` of ten columns cost more than the row's INSERT. Only column attributes may be given
(a relationship needs its events); the object is transient. ``add`` puts it in a session as
``Session.add`` does, without walking the model's relationships for objects to cascade to: one
``new`` made has none (``Session.add``'s walk was a tenth of a new task's cost).

Left to the ORM: other relationships (loaded lazily on access, as after a query), deferred
columns (none of these models has one), ``load`` events (none is listened to; ``rows`` refuses a
model that has any). The calls are the ORM loading's own (``ClassManager.new_instance``,
``IdentityMap._add_unpresent``); ``tests/test_entityreads.py`` compares the objects with a query's.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, class_mapper
from sqlalchemy.orm.mapper import _event_on_init
from sqlalchemy.orm.attributes import instance_dict, instance_state

from . import plainsql


class _Model(NamedTuple):
    mapper: Any
    keys: tuple[str, ...]  # the attribute of each column, in the table's order
    primary: tuple[int, ...]  # positions of the primary key's columns in ``keys``
    request_key: str | None  # a many-to-one ``request`` relationship, set from the row's request


def _model(model) -> _Model:
    mapper = class_mapper(model)
    if mapper.class_manager.dispatch.load or mapper.class_manager.dispatch.refresh:
        raise TypeError(f"{model.__name__} has load events: leave it to the ORM's loading")
    by_column = {prop.columns[0]: prop.key for prop in mapper.column_attrs if len(prop.columns) == 1}
    columns = list(mapper.local_table.columns)
    if any(column not in by_column or mapper.get_property(by_column[column]).deferred for column in columns):
        raise TypeError(f"{model.__name__} maps its columns in a way rows() does not load")
    keys = tuple(by_column[column] for column in columns)
    primary = tuple(columns.index(column) for column in mapper.primary_key)
    request = mapper.relationships.get("request")
    return _Model(mapper, keys, primary, "request" if request is not None and not request.uselist else None)


def columns_of(*models):
    """The select of every column of these models' tables, in order: join and filter it as needed."""
    return select(*(column for model in models for column in class_mapper(model).local_table.columns))


_models: dict[type, _Model] = {}


def rows(session: Session, statement, params: dict, models: tuple, request_model=None) -> list[tuple]:
    """The rows of ``statement`` (made by ``columns_of(*models)``) as tuples of persistent objects.

    ``request_model``: the model (among ``models``) whose object of the same row is the request
    the others' ``request`` relationship points at."""
    if session.dispatch.loaded_as_persistent:
        raise TypeError("the session has loaded_as_persistent listeners: leave the rows to the ORM's loading")
    infos = []
    for model in models:
        info = _models.get(model)
        if info is None:
            info = _models[model] = _model(model)
        infos.append(info)
    identity_map = session.identity_map
    session_id = session.hash_key
    request_at = models.index(request_model) if request_model is not None else None
    found: list[tuple] = []
    for values in plainsql.rows(session, statement, params):
        objects = []
        start = 0
        for info in infos:
            part = values[start:start + len(info.keys)]
            start += len(info.keys)
            key_values = tuple(part[i] for i in info.primary)
            if all(value is None for value in key_values):
                objects.append(None)
                continue
            identity = (info.mapper.class_, key_values, None)
            instance = identity_map.get(identity)
            if instance is None:
                instance = info.mapper.class_manager.new_instance()
                state = instance_state(instance)
                state.key = identity
                state.identity_token = None
                state.session_id = session_id
                identity_map._add_unpresent(state, identity)
                instance_dict(instance).update(zip(info.keys, part))
            objects.append(instance)
        request = objects[request_at] if request_at is not None else None
        if request is not None:
            for info, instance in zip(infos, objects):
                if instance is not None and info.request_key is not None:
                    values_of = instance_dict(instance)
                    if info.request_key not in values_of and values_of.get("request_id") == request.id:
                        values_of[info.request_key] = request
        found.append(tuple(objects))
    return found


_new_models: dict[type, tuple[frozenset[str], Any]] = {}  # model -> (its column keys, its class manager)


def new(model, **columns):
    """``model(**columns)``, for column attributes only: a transient object holding these values."""
    known = _new_models.get(model)
    if known is None:
        mapper = class_mapper(model)  # configured, as the constructor's init event makes sure
        dispatch = mapper.class_manager.dispatch
        # The mapper's own init listener only configures and sets a polymorphic identity.
        if any(listener is not _event_on_init for listener in dispatch.init) \
                or dispatch.init_failure or mapper._set_polymorphic_identity:
            raise TypeError(f"{model.__name__} has init events: make it with its constructor")
        known = _new_models[model] = (frozenset(prop.key for prop in mapper.column_attrs), mapper.class_manager)
    keys, manager = known
    if not keys.issuperset(columns):
        unknown = sorted(set(columns) - keys)[0]
        raise TypeError(f"{unknown!r} is not a column attribute of {model.__name__}: new() takes only those")
    instance = manager.new_instance()
    instance_dict(instance).update(columns)
    return instance


_relationship_keys: dict[type, frozenset[str]] = {}


def add(session: Session, instance) -> None:
    """``session.add(instance)`` for a transient object holding no related object (one ``new``
    made): what the cascade would find is nothing, so it is not looked for."""
    state = instance_state(instance)
    model = type(instance)
    keys = _relationship_keys.get(model)
    if keys is None:
        keys = _relationship_keys[model] = frozenset(rel.key for rel in class_mapper(model).relationships)
    if state.key is not None or state.session_id is not None or not keys.isdisjoint(state.dict) \
            or session._warn_on_events:
        session.add(instance)  # persistent, detached, with relationships set, or inside a flush
        return
    state._orphaned_outside_of_session = False
    session._save_or_update_impl(state)
