"""Browser libraries installed from the npm registry (``package.json``), served from ``node_modules``.

Only the built files of the packages named here are reachable, never the rest of
``node_modules``. ``make`` runs ``npm ci``; a missing install is a 404 that says so
rather than a broken page with no reason.
"""
from __future__ import annotations

from flask import Blueprint, abort, send_from_directory

from ..config import PROJECT_ROOT
from .policy import policy

NODE_MODULES = PROJECT_ROOT / "node_modules"
# package name -> the folder of its built files
PACKAGES = {"bpmn-js": NODE_MODULES / "bpmn-js" / "dist"}

bp = Blueprint("vendor", __name__, url_prefix="/vendor")


@bp.get("/<package>/<path:filename>")
@policy("public")
def asset(package: str, filename: str):
    root = PACKAGES.get(package)
    if root is None:
        abort(404)
    if not root.is_dir():
        abort(404, description=f"{package} chưa được cài (run `make venv` / `npm ci`)")
    # send_from_directory refuses paths that leave root; versions are pinned, so a day's cache is safe.
    return send_from_directory(root, filename, max_age=86400)
