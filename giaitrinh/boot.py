"""Bring a process up: settings, database, clock. Shared by the web app and the command line."""
from __future__ import annotations

from .config import Settings, load_settings
from .engine import clock, db, mail


def boot(settings: Settings | None = None) -> Settings:
    settings = settings or load_settings()
    db.init_db(settings.database_url)
    mail.configure(mail.MailConfig.from_settings(settings))
    # Notices carry their formal documents: the documents service resolves mail attachments.
    from .engine.services import documents  # noqa: F401 - registers engine.mail's resolver
    if settings.dev_clock:
        dev = clock.DevClock()
        clock.set_clock(dev)
        if settings.clock_start:
            dev.start_at(clock.parse_instant(settings.clock_start))
    return settings
