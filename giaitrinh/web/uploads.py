"""Bodies that may carry files: a larger size limit for the views that accept them, and only those.

The app's MAX_CONTENT_LENGTH (settings.max_body_bytes, 1 MB) stays the limit of every other
body. A view marked ``@accepts_files(n)`` takes up to ``n`` files of at most 10 MB each (plus
1 MB of form fields); the limit is set before any hook reads the form (the CSRF check does),
so a body over it is a 413 before it is parsed.
"""
from __future__ import annotations

from flask import current_app, request

from ..engine.services.attachments import MAX_BYTES, MAX_FILES

FIELDS_BYTES = 1024 * 1024
# The largest body any view accepts: the server in front (waitress, nginx) must let it through.
LARGEST_BODY = MAX_FILES * MAX_BYTES + FIELDS_BYTES


def accepts_files(count: int):
    if not 0 < count <= MAX_FILES:
        raise ValueError(f"a form takes 1 to {MAX_FILES} files")

    def mark(view):
        view.max_body_bytes = count * MAX_BYTES + FIELDS_BYTES
        return view

    return mark


def _raise_limit() -> None:
    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    limit = getattr(view, "max_body_bytes", None)
    if limit:
        request.max_content_length = limit


def files_of(field: str) -> list[tuple[str | None, bytes]]:
    """(name, bytes) of each non-empty file sent in ``field``; a file over 10 MB is read only
    one byte past the limit, enough to be refused as too large."""
    out = []
    for storage in request.files.getlist(field):
        data = storage.stream.read(MAX_BYTES + 1)
        if storage.filename or data:
            out.append((storage.filename, data))
    return out


def init_app(app) -> None:
    # Registered before security.init_app: its CSRF check parses the form.
    app.before_request(_raise_limit)
