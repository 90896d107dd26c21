"""Officials' accounts, roles crossed with units, and API tokens."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .models import ApiToken, Unit, User

ALL_UNITS = "*"
TOKEN_LIFETIME = timedelta(hours=12)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def hash_secret(secret: str) -> str:
    """Tokens are random and long, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in official, or the system (timers)."""

    username: str
    full_name: str = ""
    # role -> unit codes where it applies (ALL_UNITS for every unit)
    roles: dict[str, frozenset[str]] = field(default_factory=dict)

    def has_role(self, role: str, unit: str | None = None) -> bool:
        units = self.roles.get(role)
        if not units:
            return False
        return unit is None or ALL_UNITS in units or unit in units

    def units(self, *roles: str) -> frozenset[str]:
        out: set[str] = set()
        for role in roles or tuple(self.roles):
            out |= self.roles.get(role, frozenset())
        return frozenset(out)

    def sees_all_units(self, *roles: str) -> bool:
        return ALL_UNITS in self.units(*roles)

    @property
    def is_official(self) -> bool:
        return bool(self.roles)


SYSTEM = Actor("system", "Hệ thống", {})


def _descendants(session: Session) -> dict[str, set[str]]:
    children: dict[str, set[str]] = {}
    for unit in session.execute(select(Unit)).scalars():
        children.setdefault(unit.code, set())
        if unit.parent_code:
            children.setdefault(unit.parent_code, set()).add(unit.code)

    def walk(code: str) -> set[str]:
        out = {code}
        for child in children.get(code, ()):
            out |= walk(child)
        return out

    return {code: walk(code) for code in children}


def actor_for(session: Session, user: User) -> Actor:
    """A user's roles; a role held in a unit also covers the units below it."""
    tree = _descendants(session)
    roles: dict[str, set[str]] = {}
    for m in user.memberships:
        units = {ALL_UNITS} if m.unit_code is None else tree.get(m.unit_code, {m.unit_code})
        roles.setdefault(m.role, set()).update(units)
    return Actor(user.username, user.full_name, {r: frozenset(u) for r, u in roles.items()})


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or not user.is_active:
        check_password(hash_password("x"), password)  # same work either way: no user enumeration by timing
        return None
    return user if check_password(user.password_hash, password) else None


def issue_token(session: Session, user: User) -> tuple[str, ApiToken]:
    secret = secrets.token_urlsafe(32)
    now = clock.wall_now()
    row = ApiToken(user_id=user.id, token_hash=hash_secret(secret), created_at=now, expires_at=now + TOKEN_LIFETIME)
    session.add(row)
    return secret, row


def user_for_token(session: Session, secret: str) -> User | None:
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= clock.wall_now():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.is_active else None


def actor_by_username(session: Session, username: str) -> Actor | None:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    return actor_for(session, user) if user else None
