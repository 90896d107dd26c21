"""Settings read from the environment, in one place.

Every process that shares a database must agree on these, so nothing here is
derived from the machine except the development secret, which is generated once
and kept under ``instance/``.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = Path(os.environ.get("GIAITRINH_INSTANCE", PROJECT_ROOT / "instance"))
PROCESSES_DIR = PROJECT_ROOT / "processes"


class ConfigError(RuntimeError):
    pass


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _default_database_url() -> str:
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{INSTANCE_DIR / 'giaitrinh.db'}"


def _secret_key(env: str) -> str:
    key = os.environ.get("GIAITRINH_SECRET_KEY")
    if key:
        return key
    if env == "production":
        raise ConfigError("GIAITRINH_SECRET_KEY is required when GIAITRINH_ENV=production")
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _count(name: str) -> int:
    raw = os.environ.get(name, "0").strip() or "0"
    if not raw.isdigit() or int(raw) > 5:
        raise ConfigError(f"{name} must be a whole number from 0 to 5, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = ""
    secret_key: str = ""
    dev_clock: bool = False
    clock_start: str | None = None
    max_body_bytes: int = 1024 * 1024
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are trusted
    # (0: none). Behind nginx, 1: then HTTPS is recognised (HSTS, secure tracking links).
    proxy_count: int = 0
    # Per-IP limits (Flask-Limiter syntax); GIAITRINH_RATE_LIMITS=off turns them off (tests, load
    # benchmarks). The counters live in memory per process unless GIAITRINH_RATELIMIT_STORAGE
    # names a shared store (e.g. redis://host:6379).
    rate_limits: bool = True
    rate_submit: str = "5 per minute;30 per hour"
    rate_track: str = "60 per minute"
    rate_sign_in: str = "10 per minute"
    ratelimit_storage: str = "memory://"
    # Email (engine/mail.py). "outbox": every message is kept in the database and shown at
    # /dev/outbox (the default in development: a demo needs no mail server; refused in
    # production). "smtp": sent through the server below (the default in production).
    mail_backend: str = "outbox"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 10.0
    mail_from: str = "GiảiTrình <no-reply@localhost>"
    # Where citizens and officials reach the site: the tracking links in emails start with it.
    public_url: str = "http://127.0.0.1:8000"
    extra: dict = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"


def _port(name: str, default: int) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a TCP port (1..65535), not {raw!r}")
    return int(raw)


def _mail_settings(env: str) -> dict:
    backend = (os.environ.get("GIAITRINH_MAIL_BACKEND") or ("smtp" if env == "production" else "outbox")).strip().lower()
    if backend not in ("outbox", "smtp"):
        raise ConfigError(f"GIAITRINH_MAIL_BACKEND must be outbox or smtp, not {backend!r}")
    if backend == "outbox" and env == "production":
        raise ConfigError("GIAITRINH_MAIL_BACKEND=outbox is refused when GIAITRINH_ENV=production "
                          "(citizens would never receive their notices): set GIAITRINH_SMTP_HOST")
    ssl = _truthy(os.environ.get("GIAITRINH_SMTP_SSL"))
    starttls = _truthy(os.environ.get("GIAITRINH_SMTP_STARTTLS"))
    if ssl and starttls:
        raise ConfigError("GIAITRINH_SMTP_SSL (implicit TLS, port 465) and GIAITRINH_SMTP_STARTTLS exclude each other")
    public_url = (os.environ.get("GIAITRINH_PUBLIC_URL") or Settings.public_url).strip().rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"GIAITRINH_PUBLIC_URL must start with http:// or https://, not {public_url!r}")
    try:
        timeout = float(os.environ.get("GIAITRINH_SMTP_TIMEOUT") or Settings.smtp_timeout)
    except ValueError:
        raise ConfigError("GIAITRINH_SMTP_TIMEOUT must be a number of seconds") from None
    return dict(
        mail_backend=backend,
        smtp_host=(os.environ.get("GIAITRINH_SMTP_HOST") or Settings.smtp_host).strip(),
        smtp_port=_port("GIAITRINH_SMTP_PORT", 465 if ssl else 587 if starttls else 25),
        smtp_user=os.environ.get("GIAITRINH_SMTP_USER") or None,
        smtp_password=os.environ.get("GIAITRINH_SMTP_PASSWORD") or None,
        smtp_starttls=starttls,
        smtp_ssl=ssl,
        smtp_timeout=timeout,
        mail_from=(os.environ.get("GIAITRINH_MAIL_FROM") or Settings.mail_from).strip(),
        public_url=public_url,
    )


def load_settings(**overrides) -> Settings:
    env = os.environ.get("GIAITRINH_ENV", "development")
    dev_clock = _truthy(os.environ.get("GIAITRINH_DEV_CLOCK"))
    if dev_clock and env == "production":
        raise ConfigError("GIAITRINH_DEV_CLOCK is refused when GIAITRINH_ENV=production")
    values = dict(
        env=env,
        database_url=os.environ.get("DATABASE_URL") or _default_database_url(),
        secret_key=overrides.pop("secret_key", None) or _secret_key(env),
        dev_clock=dev_clock,
        clock_start=os.environ.get("GIAITRINH_CLOCK_START") or None,
        proxy_count=_count("GIAITRINH_PROXY_COUNT"),
        rate_limits=(os.environ.get("GIAITRINH_RATE_LIMITS", "on").strip().lower() not in {"0", "off", "false", "no"}),
        rate_submit=os.environ.get("GIAITRINH_RATE_SUBMIT") or Settings.rate_submit,
        rate_track=os.environ.get("GIAITRINH_RATE_TRACK") or Settings.rate_track,
        rate_sign_in=os.environ.get("GIAITRINH_RATE_SIGN_IN") or Settings.rate_sign_in,
        ratelimit_storage=os.environ.get("GIAITRINH_RATELIMIT_STORAGE") or Settings.ratelimit_storage,
        **_mail_settings(env),
    )
    values.update(overrides)
    return Settings(**values)
