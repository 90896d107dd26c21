"""Process designers' use cases: upload a BPMN version, deploy it."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from .. import audit, clock, db
from ..accounts import Actor
from ..definitions import InvalidDefinition, parse_definition
from ..errors import Conflict, Forbidden, NotFound
from ..models import Definition
from ._common import iso

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
    _require_designer(actor)
    with db.read_only() as session:
        rows = session.execute(select(Definition).order_by(Definition.key, Definition.version.desc())).scalars().all()
        return {"items": [summary(d) for d in rows], "total": len(rows)}


def upload(xml: bytes, actor: Actor, forms_dir: Path | None = None, forms: dict | None = None) -> dict:
    """Validate and store a new draft version (the same content twice is the same version).

    Raises InvalidDefinition with every problem found (line and element id).
    """
    _require_designer(actor)
    parsed = parse_definition(xml, forms=forms, forms_dir=forms_dir)
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
    """New requests start on this version; running ones keep the version they started on."""
    _require_designer(actor)
    with db.transaction() as session:
        definition = session.execute(
            select(Definition).where(Definition.id == definition_id).with_for_update()
        ).scalar_one_or_none()
        if definition is None:
            raise NotFound(f"không có phiên bản quy trình {definition_id} (unknown definition)")
        if definition.status == "deployed":
            return summary(definition)
        if definition.status == "retired":
            raise Conflict("phiên bản đã ngừng sử dụng (retired); hãy tải lên lại để tạo phiên bản mới")
        for other in session.execute(
            select(Definition).where(Definition.key == definition.key, Definition.status == "deployed")
        ).scalars():
            other.status = "retired"
        definition.status = "deployed"
        definition.deployed_at = clock.now()
        definition.deployed_by = actor.username
        audit.record(session, "definition_deployed", actor=actor.username, public=False,
                     after={"definition": definition.id, "key": definition.key, "version": definition.version})
        return summary(definition)


def upload_and_deploy(path: Path, actor: Actor) -> dict:
    """The command line's ``giaitrinh deploy FILE``: forms are read from ``forms/`` beside it."""
    result = upload(path.read_bytes(), actor, forms_dir=path.parent / "forms")
    deployed = deploy(result["id"], actor)
    return dict(deployed, warnings=result["warnings"], existing=result["existing"])


__all__ = ["InvalidDefinition", "list_definitions", "upload", "deploy", "upload_and_deploy"]
