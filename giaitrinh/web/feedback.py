"""Run a page's action and tell the person how it went (a flash message), the same way everywhere."""
from __future__ import annotations

from flask import flash
from flask_babel import gettext as _

from ..engine.errors import ServiceError


def run_and_flash(action, success: str) -> bool:
    try:
        action()
    except ServiceError as exc:
        detail = "; ".join(exc.fields.values()) if exc.fields else exc.message
        flash(_("Chưa thực hiện được: %(reason)s", reason=detail), "error")
        return False
    flash(success, "success")
    return True
