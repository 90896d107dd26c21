"""The published-answer search through its trigram index (FTS5 on SQLite, pg_trgm on PostgreSQL)
finds exactly what a plain scan of ``search_text`` finds, and follows every change of the text."""
import pytest
from sqlalchemy import select, text

from giaitrinh.engine import db, redaction
from giaitrinh.engine.models import Request
from giaitrinh.engine.services import requests

from .helpers import EXPLANATION, do, submit, to_explain

SUBJECTS = [
    "Giải trình về việc thu hồi đất tại tổ dân phố 3",
    "Giải trình về mức thu phí vệ sinh môi trường 100% hộ dân",
    "Giải trình về học_phí trường Lê Lợi, nghị định 59",
]
QUERIES = ["thu hoi dat", "THU HỒI", "phí", "100%", "100", "học_phí", "hoc_phi", "le loi", "59", "lê",
           "nghi dinh 59", "ve sinh moi", "trình", "không có", "%", "_", "dat 3", "gt-2026"]


def publish(people, subject):
    code = submit(subject=subject)["code"]
    to_explain(code, people)
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    do(code, "publish", people["tiepnhan"], {"publish": True})
    return code


def scanned(q):
    """The reference: every folded word a substring of search_text, read row by row in Python."""
    words = redaction.fold(q).split()
    with db.read_only() as session:
        rows = session.execute(select(Request.code, Request.search_text)
                               .where(Request.published_at.is_not(None))).all()
    return sorted(code for code, text_ in rows if all(w in text_ for w in words))


@pytest.fixture
def published(world, people):
    codes = [publish(people, s) for s in SUBJECTS]
    submit(subject="Giải trình về việc thu hồi đất chưa công khai")  # not published: never found
    return codes


@pytest.mark.parametrize("sort_matches,dense_matches,walk_chunk,unit_read", [
    (2000, 10_000, 1000, 20_000), (0, 10_000, 1000, 20_000), (0, 0, 1000, 20_000), (0, 10_000, 1, 0),
    (2000, 10_000, 2, 20_000), (2000, 10_000, 1000, 0)])
def test_every_query_finds_what_a_scan_finds(published, monkeypatch, sort_matches, dense_matches, walk_chunk,
                                             unit_read):
    # Every way of reading a page: the matches sorted, the newest answers kept if among the matches
    # (many matches), and the newest answers each tested (a word in very many answers); on
    # PostgreSQL the newest answers walked a chunk at a time (chunks of one or two cross answers
    # published at the same instant), and a unit's matches counted from its answers or its index.
    monkeypatch.setattr(requests, "_SORT_MATCHES", sort_matches)
    monkeypatch.setattr(requests, "_DENSE_MATCHES", dense_matches)
    monkeypatch.setattr(requests, "_WALK_CHUNK", walk_chunk)
    monkeypatch.setattr(requests, "_UNIT_READ", unit_read)
    for q in QUERIES:
        for unit in (None, "MX", "GM"):
            page = requests.search_published(q, unit=unit, per_page=2)
            assert page["total"] == (len(scanned(q)) if unit != "GM" else 0), (q, unit)
            assert page["total_exact"] is True
            assert [i["code"] for i in page["items"]] == sorted(scanned(q) if unit != "GM" else [], reverse=True)[:2]
            second = requests.search_published(q, unit=unit, per_page=1, page=2)
            assert [i["code"] for i in second["items"]] == sorted(scanned(q) if unit != "GM" else [], reverse=True)[1:2]
        found = requests.search_published(q, per_page=500)
        assert sorted(i["code"] for i in found["items"]) == scanned(q), q
        assert found["total"] == len(scanned(q)), q
    assert len(scanned("ve sinh moi")) == 1 and len(scanned("trình")) == 3  # the cases are not all empty


def test_the_index_follows_a_changed_and_a_cleared_text(published):
    first = published[0]
    assert requests.search_published("to dan pho")["total"] == 1
    with db.transaction() as session:
        row = session.execute(select(Request).where(Request.code == first)).scalar_one()
        row.search_text = "cau rong da nang " + first.lower()
    assert [i["code"] for i in requests.search_published("cau rong")["items"]] == [first]
    assert requests.search_published("to dan pho")["total"] == 0
    with db.transaction() as session:
        session.execute(select(Request).where(Request.code == first)).scalar_one().search_text = None
    assert requests.search_published("cau rong")["total"] == 0


def test_the_search_uses_the_trigram_index(published):
    with db.get_engine().connect() as conn:
        if db.is_sqlite():
            count = conn.execute(text("SELECT count(*) FROM requests_search WHERE search_text LIKE '%ve sinh%'"))
            assert count.scalar_one() == 1
            plan = " ".join(r[3] for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT rowid FROM requests_search WHERE search_text LIKE '%thu hoi%'")))
            assert "VIRTUAL TABLE INDEX" in plan
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT id FROM requests WHERE search_text LIKE '%thu hoi%'")))
            assert "ix_requests_search_trgm" in plan


def test_the_front_page_asks_for_the_newest_without_a_count(published):
    newest = requests.search_published(per_page=2, with_total=False)
    assert newest["total"] is None
    assert newest["items"] == requests.search_published(per_page=2)["items"]
    assert [i["code"] for i in newest["items"]] == sorted(published, reverse=True)[:2]


@pytest.mark.parametrize("dense_matches", [10_000, 0])
def test_the_count_stops_at_the_cap_and_says_so(published, monkeypatch, dense_matches):
    monkeypatch.setattr(requests, "TOTAL_CAP", 2)
    monkeypatch.setattr(requests, "_DENSE_MATCHES", dense_matches)
    for q, unit in (("trình", None), ("trình", "MX"), ("", None), ("le loi", None), ("le loi", "MX")):
        n = len(scanned(q))
        result = requests.search_published(q or None, unit=unit, per_page=1, page=2)
        assert (result["total"], result["total_exact"]) == (min(n, 2), n <= 2), (q, unit)
        assert [i["code"] for i in result["items"]] == sorted(scanned(q), reverse=True)[1:2], (q, unit)
