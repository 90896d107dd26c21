"""Nothing can be erased quietly: the hash chain catches an edited or removed event, retention
erases personal data without breaking it, and a backup restores to a verified chain."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text

from giaitrinh.engine import audit, clock, db
from giaitrinh.engine.models import AuditEvent, Request, Task
from giaitrinh.engine.services import requests, retention

from .helpers import EXPLANATION, do, submit, to_explain

ROOT = Path(__file__).resolve().parent.parent


def _verify():
    with db.read_only() as session:
        return audit.verify(session)


def _published_case(people) -> str:
    code = submit()["code"]
    to_explain(code, people)
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    do(code, "publish", people["tiepnhan"], {"publish": True})
    return code


def test_verify_names_the_first_altered_or_removed_event(world, people):
    _published_case(people)
    assert _verify().ok
    with db.get_engine().begin() as conn:
        target = conn.execute(text("SELECT id FROM audit_events WHERE action = 'task_completed' ORDER BY id")).first()[0]
        conn.execute(text("UPDATE audit_events SET actor = 'ai-do' WHERE id = :id"), {"id": target})
    result = _verify()
    assert not result.ok and result.first_bad_id == target and "altered" in result.problem
    with db.get_engine().begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'tiepnhan' WHERE id = :id"), {"id": target})
        # The payload itself is digested too: editing only 'after' is caught.
        conn.execute(text("UPDATE audit_events SET note = 'sửa lén' WHERE id = :id"), {"id": target})
    assert _verify().first_bad_id == target
    with db.get_engine().begin() as conn:
        conn.execute(text("UPDATE audit_events SET note = NULL WHERE id = :id"), {"id": target})
    assert _verify().ok
    with db.get_engine().begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": target})
    result = _verify()
    assert not result.ok and result.first_bad_id == target + 1 and "removed" in result.problem


def test_the_command_line_verify_fails_on_tampering(world, people, tmp_path):
    _published_case(people)
    env = dict(os.environ, DATABASE_URL=world, PYTHONPATH=str(ROOT), GIAITRINH_INSTANCE=str(tmp_path))
    ok = subprocess.run([sys.executable, "-m", "giaitrinh.cli", "audit", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "intact" in ok.stdout
    with db.get_engine().begin() as conn:
        conn.execute(text("UPDATE audit_events SET public = NOT public WHERE id = 3"))
    bad = subprocess.run([sys.executable, "-m", "giaitrinh.cli", "audit", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "event 3" in bad.stderr


def test_retention_erases_personal_data_and_keeps_the_answer_and_the_chain(world, people, fixed_clock):
    code = _published_case(people)
    open_case = submit()["code"]
    assert retention.due(days=365) == []
    fixed_clock.advance(days=400)
    assert retention.due(days=365) == [code]  # the open case is never purged
    result = retention.purge(code)
    assert result["events"] > 0 and not result["skipped"]
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        assert (request.requester_name, request.requester_phone, request.requester_email) == ("[đã xóa]", "[đã xóa]", None)
        assert request.status == "published" and request.published_text["content"]
        assert "0912 345 678" not in str(request.explanation)
        assert all(t.data is None for t in session.execute(select(Task).where(Task.request_id == request.id)).scalars())
        erased = session.execute(select(AuditEvent).where(AuditEvent.request_id == request.id,
                                                          AuditEvent.purged_at.is_not(None))).scalars().all()
        assert erased and all(e.after is None and e.note is None for e in erased)
        assert "Nguyễn Văn An" not in str([(e.note, e.before, e.after) for e in session.execute(
            select(AuditEvent).where(AuditEvent.request_id == request.id)).scalars()])
    assert _verify().ok
    assert requests.published(code)["code"] == code  # the public answer stays
    assert requests.search_published("thu hồi đất")["total"] >= 1
    assert retention.purge(code)["skipped"]
    # "Purging" an event that no retention record names is tampering, and verify says so.
    with db.get_engine().begin() as conn:
        victim = conn.execute(text("SELECT min(id) FROM audit_events WHERE request_id = "
                                   "(SELECT id FROM requests WHERE code = :c)"), {"c": open_case}).scalar_one()
        conn.execute(text("UPDATE audit_events SET after = NULL, purged_at = at WHERE id = :id"), {"id": victim})
    result = _verify()
    assert not result.ok and result.first_bad_id == victim and "retention record" in result.problem


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "giaitrinh.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_backup_and_restore_bring_back_a_verified_database(world, people, tmp_path):
    code = _published_case(people)
    env = dict(os.environ, DATABASE_URL=world, PYTHONPATH=str(ROOT), GIAITRINH_INSTANCE=str(tmp_path))
    backup = tmp_path / "backup" / "giaitrinh.dump"
    done = _cli(env, "backup", str(backup))
    assert done.returncode == 0, done.stderr
    assert backup.stat().st_size > 0
    later = submit(subject="Sau khi sao lưu")["code"]
    db.get_engine().dispose()
    done = _cli(env, "restore", "--yes", str(backup))
    assert done.returncode == 0, done.stderr
    assert "audit trail intact" in done.stdout
    with db.read_only() as session:
        codes = set(session.execute(select(Request.code)).scalars())
    assert code in codes and later not in codes
    assert _verify().ok
    # A damaged file is refused before anything is replaced.
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    refused = _cli(env, "restore", "--yes", str(broken))
    assert refused.returncode != 0
    with db.read_only() as session:
        assert session.execute(select(Request.code).where(Request.code == code)).scalar_one() == code


def test_events_held_for_one_statement_are_chained_in_order_and_seen_by_a_reader(world, fixed_clock):
    from giaitrinh.engine.services import _common

    code = submit()["code"]
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        audit.defer_inserts(session)
        audit.record(session, "suspended", actor="lanhdao", request_id=request.id, note="một")
        fixed_clock.advance(days=3)
        audit.record(session, "resumed", actor="lanhdao", request_id=request.id, note="hai")
        # Nothing written yet (a query that autoflushes would write them); a reader of the trail
        # that does not autoflush writes them first.
        with session.no_autoflush:
            assert session.execute(select(AuditEvent.id).where(AuditEvent.request_id == request.id,
                                                               AuditEvent.action == "resumed")).first() is None
        assert _common.suspended_days(session, request.id, clock.now()) == 3
        audit.record(session, "suspended", actor="lanhdao", request_id=request.id, note="ba")
    # The last one went out at the commit, after the two the reader wrote.
    with db.read_only() as session:
        notes = session.execute(select(AuditEvent.note).where(AuditEvent.request_id == request.id,
                                                              AuditEvent.actor == "lanhdao")
                                .order_by(AuditEvent.id)).scalars().all()
    assert notes == ["một", "hai", "ba"]
    assert _verify().ok
