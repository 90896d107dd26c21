"""Run the alembic migrations in ``migrations/`` against a database URL."""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from .config import PROJECT_ROOT
from .engine import db


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
    # New indexes need the planner's statistics to be chosen (SQLite only; engine/db.py).
    engine = create_engine(url)
    try:
        db.refresh_statistics(engine, full=True)
    finally:
        engine.dispose()


def revision(url: str, message: str) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=True)
