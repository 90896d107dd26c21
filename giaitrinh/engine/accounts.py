"""Officials' accounts, roles crossed with units, and API tokens."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2 import exceptions as argon2_errors

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .models import ApiToken, Unit, User

ALL_UNITS = "*"
TOKEN_LIFETIME = timedelta(hours=12)


# argon2id with the library's defaults (RFC 9106's second recommended profile).
_hasher = PasswordHasher()
MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (argon2_errors.VerificationError, argon2_errors.InvalidHashError):
            return False
    # Hashes written before argon2 (scrypt); replaced at the next successful sign-in.
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def needs_rehash(stored: str) -> bool:
    return not stored.startswith("$argon2") or _hasher.check_needs_rehash(stored)


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def hash_secret(secret: str) -> str:
    """Tokens are random and long, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(secret.encode()).hexdigest()


# The roles that handle cases and may see a case's personal data. Designers shape processes and
# exporters pull the redacted feed: neither opens a case, whatever units their role covers.
CASE_ROLES = ("reception", "head", "official", "supervisor", "admin")


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

    @property
    def handles_cases(self) -> bool:
        """Holds a role that works on cases somewhere (not only designing processes or exporting)."""
        return bool(self.units(*CASE_ROLES))

    def handles_cases_of(self, unit: str) -> bool:
        """May open this unit's cases with their personal data: a case role in the unit (or all)."""
        units = self.units(*CASE_ROLES)
        return ALL_UNITS in units or unit in units


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


class SignInRefused(Exception):
    """Wrong credentials, a disabled account, or a temporary lockout (then ``locked_until``)."""

    def __init__(self, locked_until: datetime | None = None):
        super().__init__("sign-in refused")
        self.locked_until = locked_until


def sign_in(username: str, password: str) -> int:
    """Check a password in a transaction of its own; the user's id, or :class:`SignInRefused`.

    Failures are counted and written before the refusal is raised, and enough of them
    lock the account for a while. Unknown users cost the same hashing work as known
    ones, so timing does not tell which usernames exist; a locked account is refused
    even with the right password.
    """
    from . import audit, db

    refused: SignInRefused | None = None
    with db.transaction() as session:
        user = session.execute(select(User).where(User.username == username).with_for_update()).scalar_one_or_none()
        now = clock.wall_now()
        if user is None or not user.is_active:
            check_password(_dummy_hash(), password)
            refused = SignInRefused()
        elif user.locked_until is not None and user.locked_until > now:
            check_password(_dummy_hash(), password)
            refused = SignInRefused(user.locked_until)
        elif not check_password(user.password_hash, password):
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILED_SIGN_INS:
                user.locked_until = now + LOCKOUT
                user.failed_logins = 0
                audit.record(session, "account_locked", actor=user.username, public=False,
                             after={"until": user.locked_until.isoformat(), "after_failures": MAX_FAILED_SIGN_INS})
                refused = SignInRefused(user.locked_until)
            else:
                refused = SignInRefused()
        else:
            user.failed_logins = 0
            user.locked_until = None
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            user_id = user.id
    if refused is not None:
        raise refused
    return user_id


def sign_out_everywhere(session: Session, user: User) -> int:
    """End every browser session and revoke every API token of the user; returns tokens revoked."""
    from . import audit

    now = clock.wall_now()
    user.session_epoch += 1
    revoked = 0
    for token in session.execute(select(ApiToken).where(ApiToken.user_id == user.id,
                                                        ApiToken.revoked_at.is_(None))).scalars():
        token.revoked_at = now
        revoked += 1
    audit.record(session, "signed_out_everywhere", actor=user.username, public=False, after={"tokens": revoked})
    return revoked


def issue_token(session: Session, user: User) -> tuple[str, ApiToken]:
    secret = secrets.token_urlsafe(32)
    now = clock.wall_now()
    row = ApiToken(user_id=user.id, token_hash=hash_secret(secret), created_at=now, expires_at=now + TOKEN_LIFETIME)
    session.add(row)
    return secret, row


def revoke_token(session: Session, secret: str) -> bool:
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = clock.wall_now()
    return True


def user_for_token(session: Session, secret: str) -> User | None:
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= clock.wall_now():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.is_active else None


def actor_by_username(session: Session, username: str) -> Actor | None:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    return actor_for(session, user) if user else None
