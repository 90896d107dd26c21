"""Process designers' use cases: validate, upload, deploy a BPMN version; move running cases to it.

A version is self-contained and immutable: its BPMN text and, in its manifest, every form
its user tasks name (JSON Schema) and its statutory periods. Saving an edited diagram makes
a new version (the same content is the same version); running requests keep theirs until a
designer migrates them, explicitly, after a dry run.
"""
from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from .. import audit, clock, db, runtime
from ..accounts import Actor
from ..definitions import ROLES, InvalidDefinition, parse_definition
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..forms import form_problems
from ..models import Definition, Request
from ._common import definition as definition_version
from ._common import iso, load_running, request_for_update, save_running

log = logging.getLogger(__name__)
MAX_FORMS = 100

DESIGNERS = ("designer", "admin")


def _require_designer(actor: Actor) -> None:
    if not any(actor.roles.get(r) for r in DESIGNERS):
        raise Forbidden("chỉ cán bộ quản trị quy trình (designers only)")


def summary(d: Definition) -> dict:
    return {"id": d.id, "key": d.key, "name": d.manifest.get("name", d.key), "version": d.version,
            "status": d.status, "sha256": d.sha256, "created_at": iso(d.created_at), "created_by": d.created_by,
            "deployed_at": iso(d.deployed_at), "deployed_by": d.deployed_by,
            "periods": d.manifest.get("periods", {})}


def list_definitions(actor: Actor) -> dict:
    """Every version of every process, newest first, with how many open requests run on each."""
    _require_designer(actor)
    with db.read_only() as session:
        rows = session.execute(select(Definition).order_by(Definition.key, Definition.version.desc())).scalars().all()
        running = dict(session.execute(
            select(Request.definition_id, func.count()).where(Request.closed.is_(False))
            .group_by(Request.definition_id)).all())
        return {"items": [dict(summary(d), running=running.get(d.id, 0)) for d in rows], "total": len(rows)}


def _row(session, definition_id: int, content: bool = False) -> Definition:
    options = [undefer(Definition.bpmn_xml)] if content else []
    row = session.get(Definition, definition_id, options=options)
    if row is None:
        raise NotFound(f"không có phiên bản quy trình {definition_id} (unknown definition)")
    return row


def get_definition(definition_id: int, actor: Actor) -> dict:
    """One version: its summary, its user tasks (step, role, form) and its forms."""
    _require_designer(actor)
    with db.read_only() as session:
        d = _row(session, definition_id)
        return dict(summary(d), tasks=d.manifest.get("tasks", {}), forms=d.manifest.get("forms", {}),
                    statuses=d.manifest.get("statuses", {}))


def bpmn(definition_id: int, actor: Actor) -> dict:
    """The BPMN text of a version, exactly as stored (what its sha256 covers with its forms)."""
    _require_designer(actor)
    with db.read_only() as session:
        d = _row(session, definition_id, content=True)
        return {"id": d.id, "key": d.key, "version": d.version, "bpmn": d.bpmn_xml}


def _check_forms(forms) -> dict:
    if forms is None:
        return {}
    if not isinstance(forms, dict) or len(forms) > MAX_FORMS or not all(
            isinstance(k, str) and 0 < len(k) <= 128 for k in forms):
        raise ValidationFailed("biểu mẫu phải là một đối tượng tên tệp → JSON Schema",
                               {"forms": f"an object of at most {MAX_FORMS} form names to JSON Schemas"})
    return forms


def _known_forms(session) -> dict:
    """The forms of every version, newest last: a diagram exported from here and uploaded again
    (or edited in the modeler) names forms that already exist."""
    known: dict = {}
    for manifest in session.execute(select(Definition.manifest).order_by(Definition.version)).scalars():
        known.update(manifest.get("forms") or {})
    return known


def _parse(xml: bytes, forms: dict | None, forms_dir: Path | None):
    forms = _check_forms(forms)
    with db.read_only() as session:
        known = _known_forms(session)
    return parse_definition(xml, forms=forms, forms_dir=forms_dir, fallback_forms=known)


def validate(xml: bytes, actor: Actor, forms: dict | None = None, forms_dir: Path | None = None) -> dict:
    """Every check an upload makes, without storing anything: ``{"valid", "problems", "warnings"}``."""
    _require_designer(actor)
    try:
        parsed = _parse(xml, forms, forms_dir)
    except InvalidDefinition as exc:
        return {"valid": False, "problems": [p.as_dict() for p in exc.problems], "warnings": []}
    return {"valid": True, "problems": [], "warnings": parsed.warnings, "key": parsed.key, "sha256": parsed.sha256}


def check_form(schema, actor: Actor) -> dict:
    """A task form's problems (JSON Schema's metaschema, then the product's rules)."""
    _require_designer(actor)
    return {"valid": not (problems := form_problems(schema)), "problems": problems}


def upload(xml: bytes, actor: Actor, forms_dir: Path | None = None, forms: dict | None = None) -> dict:
    """Validate and store a new draft version (the same content twice is the same version).

    ``forms`` (form file name -> JSON Schema) are the forms edited with the diagram; a form
    the diagram names and ``forms`` lacks comes from ``forms_dir``, then from earlier versions.
    The version's manifest keeps a copy of each form it uses, so it never depends on files.
    Raises InvalidDefinition with every problem found (line and element id).
    """
    _require_designer(actor)
    parsed = _parse(xml, forms, forms_dir)
    with db.transaction() as session:
        same = session.execute(
            select(Definition).where(Definition.key == parsed.key, Definition.sha256 == parsed.sha256)
        ).scalar_one_or_none()
        if same is not None:
            return dict(summary(same), warnings=parsed.warnings, existing=True)
        version = (session.execute(select(func.max(Definition.version)).where(Definition.key == parsed.key))
                   .scalar_one_or_none() or 0) + 1
        definition = Definition(key=parsed.key, version=version, status="draft", sha256=parsed.sha256,
                                bpmn_xml=xml.decode("utf-8"), manifest=parsed.manifest, created_at=clock.now(),
                                created_by=actor.username)
        session.add(definition)
        session.flush()
        audit.record(session, "definition_uploaded", actor=actor.username, public=False,
                     after={"definition": definition.id, "key": parsed.key, "version": version, "sha256": parsed.sha256})
        return dict(summary(definition), warnings=parsed.warnings, existing=False)


def deploy(definition_id: int, actor: Actor) -> dict:
    """New requests start on this version (a draft, or a retired one to roll back); running ones keep theirs."""
    _require_designer(actor)
    with db.transaction() as session:
        definition = session.execute(
            select(Definition).where(Definition.id == definition_id).with_for_update()
        ).scalar_one_or_none()
        if definition is None:
            raise NotFound(f"không có phiên bản quy trình {definition_id} (unknown definition)")
        if definition.status == "deployed":
            return summary(definition)
        # A retired version may be deployed again: rolling back a change is a deployment like any other.
        before = definition.status
        for other in session.execute(
            select(Definition).where(Definition.key == definition.key, Definition.status == "deployed")
        ).scalars():
            other.status = "retired"
        definition.status = "deployed"
        definition.deployed_at = clock.now()
        definition.deployed_by = actor.username
        audit.record(session, "definition_deployed", actor=actor.username, public=False, before={"status": before},
                     after={"definition": definition.id, "key": definition.key, "version": definition.version})
        return summary(definition)


def upload_and_deploy(path: Path, actor: Actor) -> dict:
    """The command line's ``giaitrinh deploy FILE``: forms are read from ``forms/`` beside it."""
    result = upload(path.read_bytes(), actor, forms_dir=path.parent / "forms")
    deployed = deploy(result["id"], actor)
    return dict(deployed, warnings=result["warnings"], existing=result["existing"])


# -- moving running requests to another version -------------------------------------------

MAX_MIGRATION_BATCH = 5000


def migration_candidates(from_id: int, actor: Actor) -> dict:
    """The open requests running on a version (read from typed columns, no workflow touched)."""
    _require_designer(actor)
    with db.read_only() as session:
        source = _row(session, from_id)
        codes = session.execute(select(Request.code).where(Request.definition_id == from_id, Request.closed.is_(False))
                                .order_by(Request.id)).scalars().all()
        targets = session.execute(select(Definition).where(Definition.key == source.key, Definition.id != from_id)
                                  .order_by(Definition.version.desc())).scalars().all()
        return {"definition": summary(source), "codes": codes, "targets": [summary(t) for t in targets]}


def migrate_instances(from_id: int, to_id: int, dry_run: bool, actor: Actor, codes: list[str] | None = None) -> dict:
    """Move the open requests of version ``from_id`` (or only ``codes`` of them) to version ``to_id``.

    Per request: do the steps it has reached exist in the new version, do its active tasks
    and waiting timers keep their kind? A dry run answers that for each request and changes
    nothing. A real run migrates each request that passes in its own transaction (state,
    ``requests.definition_id``, ``workflow_states.definition_id``, tasks and timers projected
    again) with an audit event naming both versions; one that fails is left as it was.
    """
    _require_designer(actor)
    with db.read_only() as session:
        source, target = _row(session, from_id), _row(session, to_id)
        if source.key != target.key:
            raise ValidationFailed("hai phiên bản thuộc hai quy trình khác nhau", {"to": "a version of the same process"})
        if from_id == to_id:
            raise ValidationFailed("phiên bản đích trùng phiên bản nguồn", {"to": "another version"})
        if target.status != "deployed":
            raise Conflict("chỉ chuyển hồ sơ sang phiên bản đang triển khai (deploy the target version first)")
        query = select(Request.id, Request.code).where(Request.definition_id == from_id, Request.closed.is_(False))
        if codes is not None:
            query = query.where(Request.code.in_(codes[:MAX_MIGRATION_BATCH]))
        pending = session.execute(query.order_by(Request.id).limit(MAX_MIGRATION_BATCH)).all()
        versions = {"from": {"id": source.id, "version": source.version},
                    "to": {"id": target.id, "version": target.version}}
    items = [_migrate_one(request_id, code, from_id, to_id, dry_run, actor, versions) for request_id, code in pending]
    return {"dry_run": dry_run, **versions, "items": items, "total": len(items),
            "ok": sum(1 for i in items if i["ok"]), "migrated": sum(1 for i in items if i.get("migrated"))}


def _active_steps(running) -> list[str]:
    return sorted({t.task_spec.bpmn_id for t in runtime.ready_human_tasks(running.workflow)})


def _migrate_one(request_id: int, code: str, from_id: int, to_id: int, dry_run: bool, actor: Actor,
                 versions: dict) -> dict:
    item = {"code": code, "ok": False, "problems": [], "active_steps": []}
    try:
        if dry_run:
            with db.read_only() as session:
                request = session.get(Request, request_id)
                if request is None or request.definition_id != from_id:
                    item["problems"] = ["hồ sơ đã đổi phiên bản (moved meanwhile)"]
                    return item
                running, _state = load_running(session, request)
                item["active_steps"] = _active_steps(running)
                target = definition_version(session, to_id)
                item["problems"] = runtime.migration_problems(running, target)
                if not item["problems"]:
                    runtime.migrate(running, target)  # the whole move in memory, then thrown away
                item["ok"] = not item["problems"]
                return item
        with db.transaction() as session:
            request = request_for_update(session, code)
            if request.definition_id != from_id or request.closed:
                item["problems"] = ["hồ sơ đã đổi phiên bản hoặc đã kết thúc (moved or closed meanwhile)"]
                return item
            running, state = load_running(session, request)
            item["active_steps"] = _active_steps(running)
            target = definition_version(session, to_id)
            item["problems"] = runtime.migration_problems(running, target)
            if item["problems"]:
                return item
            migrated = runtime.migrate(running, target)
            request.definition_id = to_id
            state.definition_id = to_id
            save_running(session, request, migrated, state, actor=actor.username)
            audit.record(session, "instance_migrated", actor=actor.username, request_id=request.id, public=False,
                         before={"definition": versions["from"]["id"], "version": versions["from"]["version"]},
                         after={"definition": versions["to"]["id"], "version": versions["to"]["version"],
                                "active_steps": item["active_steps"]})
            item["ok"] = item["migrated"] = True
            return item
    except (InvalidDefinition, ValueError, KeyError, LookupError) as exc:
        # A state the new spec cannot hold: this request stays where it was (nothing committed).
        log.warning("migration of %s to definition %s refused: %r", code, to_id, exc)
        item["ok"] = False
        item["problems"] = item["problems"] or [f"không chuyển được: {exc} (cannot be moved)"]
        return item


__all__ = ["ROLES", "InvalidDefinition", "list_definitions", "get_definition", "bpmn", "validate", "check_form", "upload",
           "deploy", "upload_and_deploy", "migration_candidates", "migrate_instances"]
