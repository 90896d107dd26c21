"""Per-IP rate limits on what an anonymous caller can repeat: submitting, tracking, signing in.

A citizen needs no account, so the portal is the door a flood would use; tracking
codes and secret tokens must not be guessable by trying many. Limits come from the
settings, so an agency can tune them and tests can switch them off.
"""
from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def _settings():
    return current_app.config["GIAITRINH"]


def submit_limit() -> str:
    return _settings().rate_submit


def track_limit() -> str:
    return _settings().rate_track


def sign_in_limit() -> str:
    return _settings().rate_sign_in


def init_app(app, settings) -> None:
    app.config["RATELIMIT_ENABLED"] = settings.rate_limits
    app.config["RATELIMIT_STORAGE_URI"] = settings.ratelimit_storage
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
