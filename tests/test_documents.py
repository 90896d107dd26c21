"""Documents issued along the real lifecycle (Decree 30 layout), their PDF and DOCX, access, templates;
attachments checked by content."""
import hashlib
import io
import threading
import unicodedata
import zipfile

import pytest
from docx import Document as Docx
from pypdf import PdfReader
from sqlalchemy import func, select

from giaitrinh.engine import attachments as files
from giaitrinh.engine import audit, db
from giaitrinh.engine import documents as docs
from giaitrinh.engine.errors import Forbidden, NotFound, ValidationFailed
from giaitrinh.engine.models import AuditEvent, Document, DocumentFile
from giaitrinh.engine.services import attachments, documents, requests, supervision, tasks
from giaitrinh.engine.services.tasks import REFUSAL_GROUNDS

from .helpers import CITIZEN, EXPLANATION, do, submit, task_id, to_explain
from .test_concurrency import _race


@pytest.fixture(autouse=True)
def _store(tmp_path):
    files.set_storage_dir(tmp_path / "attachments")
    yield
    files.set_storage_dir(None)


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


def docx_text(data: bytes) -> str:
    doc = Docx(io.BytesIO(data))
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for cell in table._cells:
            parts.extend(p.text for p in cell.paragraphs)
    return " ".join(" ".join(parts).split())


def kinds(code, token):
    return [d["kind"] for d in documents.list_documents(code, token)["items"]]


def fetch(code, token, item, fmt="pdf"):
    got = documents.download(code, item["id"], fmt, token)
    assert hashlib.sha256(got["content"]).hexdigest() == got["sha256"] == item[f"{fmt}_sha256"]
    return got["content"]


def test_each_kind_issued_along_the_lifecycle(world, people, fixed_clock):
    sub = submit()
    code, token = sub["code"], sub["token"]
    fixed_clock.advance(days=1)  # Saturday 21/11/2026
    do(code, "receive", people["tiepnhan"], {"decision": "accept", "note": "Đủ điều kiện thụ lý."})
    do(code, "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    do(code, "explain", people["chuyenvien"], {"extend": {"days": 10, "reason": "nội dung phức tạp, cần xác minh hồ sơ địa chính"}})
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION, "needs_dialogue": True})
    do(code, "dialogue", people["chuyenvien"], {"minutes": "Hai bên đã trao đổi về ranh giới thửa đất số 125."})
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    items = documents.list_documents(code, token)["items"]
    assert [d["kind"] for d in items] == ["acceptance_notice", "extension_notice", "minutes", "explanation"]
    assert [d["symbol"] for d in items] == ["1/TB-UBND", "2/TB-UBND", "1/BB-UBND", "1/UBND-GT"]
    assert all(len(d["sha256"]) == 64 and d["pdf_url"].endswith(f"/documents/{d['id']}/pdf") for d in items)

    acceptance = pdf_text(fetch(code, token, items[0]))
    for text in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "ỦY BAN NHÂN DÂN PHƯỜNG MỸ XUYÊN",
                 "Số: 1/TB-UBND", "Mỹ Xuyên, ngày 21 tháng 11 năm 2026", "THÔNG BÁO", "Về việc thụ lý giải trình",
                 "Nguyễn Văn An", "Đủ điều kiện thụ lý.", "Nơi nhận:", "CHỦ TỊCH", "Lê Văn Lãnh Đạo"):
        assert text in acceptance, text
    assert "07/12/2026" in acceptance  # the explanation deadline, 15 days from the acceptance

    extension = pdf_text(fetch(code, token, items[1]))
    assert "nội dung phức tạp, cần xác minh hồ sơ địa chính" in extension and "10 ngày" in extension
    assert "17/12/2026" in extension  # the new deadline
    minutes = pdf_text(fetch(code, token, items[2]))
    assert "BIÊN BẢN" in minutes and "ranh giới thửa đất số 125" in minutes and "NGƯỜI YÊU CẦU GIẢI TRÌNH" in minutes

    explanation_pdf = fetch(code, token, items[3])
    explanation = pdf_text(explanation_pdf)
    # The five contents of art. 12.3: who and where, the request, the working session, the legal basis, the answer.
    for text in ("Nguyễn Văn An", "12 Trần Phú, phường Mỹ Xuyên", "thửa số 125", "ranh giới thửa đất số 125",
                 "Luật Đất đai 2024, Điều 79", "đã được thông báo thu hồi đất đúng trình tự", "Số: 1/UBND-GT"):
        assert text in explanation, text
    word = docx_text(fetch(code, token, items[3], "docx"))
    for text in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Số: 1/UBND-GT", "4. Căn cứ pháp lý: Luật Đất đai 2024, Điều 79",
                 "Lê Văn Lãnh Đạo", "Nơi nhận:"):
        assert text in word, text

    # Stored once: the list and the download keep answering the same bytes; the trail holds the digests.
    assert documents.list_documents(code, token)["items"] == items
    assert documents.download(code, items[3]["id"], "pdf", token)["content"] == explanation_pdf
    with db.read_only() as session:
        rendered = session.execute(select(AuditEvent.after).where(AuditEvent.action == "document_rendered")).scalars().all()
        assert {r["pdf_sha256"] for r in rendered} == {d["sha256"] for d in items}
        issued = session.execute(select(AuditEvent.after).where(AuditEvent.action == "document_issued")).scalars().all()
        assert [e["content_sha256"] for e in issued] == [d["content_sha256"] for d in items]
        assert audit.verify(session).ok
    # The citizen's timeline is what it was: issuing documents adds no public events.
    assert [e["event"] for e in requests.view(code, token)["timeline"]] == [
        "submitted", "accepted", "assigned", "extended", "dialogue", "explained"]


def test_refusal_redirection_suspension_resumption_termination(world, people, fixed_clock):
    refused = submit()
    do(refused["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    item, = documents.list_documents(refused["code"], refused["token"])["items"]
    assert item["kind"] == "refusal_notice"
    text = pdf_text(fetch(refused["code"], refused["token"], item))
    assert REFUSAL_GROUNDS["secret"] in text and "khoản 4 Điều 11" in text and "Về việc từ chối yêu cầu giải trình" in text

    redirected = submit()
    do(redirected["code"], "receive", people["tiepnhan"], {"decision": "redirect", "redirect_to": "Sở Tài nguyên và Môi trường"})
    item, = documents.list_documents(redirected["code"], redirected["token"])["items"]
    assert item["kind"] == "redirection_notice"
    assert "Sở Tài nguyên và Môi trường" in pdf_text(fetch(redirected["code"], redirected["token"], item))

    case = submit()
    to_explain(case["code"], people)
    supervision.suspend(case["code"], people["lanhdao"], "unable", "Người yêu cầu đang điều trị tại bệnh viện.")
    fixed_clock.advance(days=3)
    supervision.resume(case["code"], people["lanhdao"])
    requests.withdraw(case["code"], case["token"], "Đã được giải quyết qua tiếp dân.")
    items = documents.list_documents(case["code"], case["token"])["items"]
    assert [d["kind"] for d in items] == ["acceptance_notice", "suspension_notice", "resumption_notice", "termination_notice"]
    # One register per unit, type and year: the notices of every case share the TB numbers.
    assert [d["symbol"] for d in items] == ["3/TB-UBND", "4/TB-UBND", "5/TB-UBND", "6/TB-UBND"]
    suspension = pdf_text(fetch(case["code"], case["token"], items[1]))
    assert "khoản 1 Điều 14" in suspension and "ốm đau" in suspension and "điều trị tại bệnh viện" in suspension
    resumption = pdf_text(fetch(case["code"], case["token"], items[2]))
    assert "khoản 2 Điều 14" in resumption and "Về việc tiếp tục giải trình" in resumption
    # The new deadline (moved by the days the case stood still) is printed as a date.
    with db.read_only() as session:
        resumed = session.execute(select(AuditEvent.after).where(AuditEvent.action == "resumed")).scalar_one()
    year, month, day = resumed["deadlines"]["explain_by"][:10].split("-")
    assert f"Thời hạn giải trình: đến hết ngày {day}/{month}/{year}." in resumption
    termination = pdf_text(fetch(case["code"], case["token"], items[3]))
    assert "khoản 3 Điều 14" in termination and "Đã được giải quyết qua tiếp dân." in termination


def test_who_may_read_a_cases_documents(world, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    other = submit()
    items = documents.list_documents(sub["code"], sub["token"])["items"]
    assert documents.list_documents(sub["code"], actor=people["chuyenvien"])["items"] == items
    with pytest.raises(NotFound):
        documents.list_documents(sub["code"], None)
    with pytest.raises(NotFound):
        documents.list_documents(sub["code"], other["token"])
    with pytest.raises(NotFound):
        documents.download(sub["code"], items[0]["id"], "pdf", other["token"])
    with pytest.raises(Forbidden):
        documents.list_documents(sub["code"], actor=people["chuyenvien2"])
    with pytest.raises(Forbidden):
        documents.download(sub["code"], items[0]["id"], "pdf", actor=people["chuyenvien2"])
    with pytest.raises(NotFound):  # a document of another case, with this case's token
        do(other["code"], "receive", people["tiepnhan"], {"decision": "accept"})
        theirs = documents.list_documents(other["code"], other["token"])["items"][0]
        documents.download(sub["code"], theirs["id"], "pdf", sub["token"])
    with pytest.raises(NotFound):
        documents.download(sub["code"], items[0]["id"], "exe", sub["token"])
    got = documents.download(sub["code"], items[0]["id"], "pdf", actor=people["lanhdao"])
    assert got["content"].startswith(b"%PDF-")
    with db.read_only() as session:  # an official's download is a look at personal data: audited
        assert session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "personal_data_viewed", AuditEvent.actor == "lanhdao")).scalar_one() == 1


def test_designers_and_exporters_never_open_a_case(world, people):
    """Their roles cover every unit, but neither handles cases: no personal data, no case file."""
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    [item] = documents.list_documents(sub["code"], sub["token"])["items"]
    for who in ("ketnoi", "thietke"):
        for call in (lambda a: requests.view(sub["code"], None, a),
                     lambda a: documents.list_documents(sub["code"], actor=a),
                     lambda a: documents.download(sub["code"], item["id"], "pdf", actor=a),
                     lambda a: attachments.list_attachments(sub["code"], actor=a),
                     lambda a: attachments.attach(sub["code"], [("scan.png", png_bytes())], a),
                     lambda a: supervision.diagram(sub["code"], a)):
            with pytest.raises((Forbidden, NotFound)):
                call(people[who])


def test_an_official_sending_a_token_is_still_recorded_looking(world, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    [item] = documents.list_documents(sub["code"], sub["token"])["items"]
    documents.download(sub["code"], item["id"], "pdf", "junk", actor=people["chuyenvien"])
    requests.view(sub["code"], "junk", people["thanhtra"])
    with db.read_only() as session:
        seen = session.execute(select(AuditEvent.actor).where(AuditEvent.action == "personal_data_viewed")).scalars()
        assert sorted(seen) == ["chuyenvien", "thanhtra"]


def test_rendering_is_deterministic_and_keeps_the_first_bytes(world, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    with db.read_only() as session:
        row = session.execute(select(Document)).scalar_one()
        fields = dict(row.fields)
        assert row.pdf_sha256 is None and docs.content_digest(fields) == row.content_sha256
    assert docs.render_pdf(fields) == docs.render_pdf(fields)
    assert docs.render_docx(fields) == docs.render_docx(fields)
    assert documents.render_pending() == 1 and documents.render_pending() == 0
    with db.read_only() as session:
        stored = session.execute(select(DocumentFile).where(DocumentFile.format == "pdf")).scalar_one()
        assert stored.sha256 == hashlib.sha256(docs.render_pdf(fields)).hexdigest()


def test_place_date_and_issuer_in_the_decree_form():
    from datetime import datetime

    assert docs.place_and_date("Mỹ Xuyên", datetime.fromisoformat("2026-11-20T09:00:00+07:00")) == \
        "Mỹ Xuyên, ngày 20 tháng 11 năm 2026"
    assert docs.place_and_date("Mỹ Xuyên", datetime.fromisoformat("2026-02-05T09:00:00+07:00")) == \
        "Mỹ Xuyên, ngày 05 tháng 02 năm 2026"
    # 23:30 UTC on 31/12 is already New Year's Day in Hà Nội.
    assert docs.place_and_date("Gia Minh", datetime.fromisoformat("2026-12-31T23:30:00+00:00")) == \
        "Gia Minh, ngày 01 tháng 01 năm 2027"
    assert docs.issuer_name("UBND phường Mỹ Xuyên") == "Ủy ban nhân dân phường Mỹ Xuyên"
    assert docs.place_name("UBND phường Mỹ Xuyên") == "Mỹ Xuyên"
    assert docs.place_name("UBND thành phố Hải Phòng") == "Hải Phòng"
    assert docs.symbol(12, "acceptance_notice", "UBND") == "12/TB-UBND"


def test_administrators_edit_templates_with_checked_placeholders(world, people):
    admin = people["admin"]
    with pytest.raises(Forbidden):
        documents.save_template(people["lanhdao"], "acceptance_notice", {})
    current = documents.get_template(admin, "acceptance_notice")
    assert current["version"] == 0 and "{explain_by}" in current["sections"]["body"]
    with pytest.raises(ValidationFailed) as caught:
        documents.save_template(admin, "acceptance_notice", dict(current["sections"], body="Kính gửi {ho_ten}."))
    assert "{ho_ten}" in caught.value.fields["body"] and "{requester_name}" in caught.value.fields["body"]
    for hostile in ("{requester_name.__class__}", "{requester_name[0]}", "{code!r}", "{code:>99999}", "{", "{0}"):
        with pytest.raises(ValidationFailed) as caught:
            documents.save_template(admin, "acceptance_notice", dict(current["sections"], body=hostile))
        assert "body" in caught.value.fields, hostile
    with pytest.raises(ValidationFailed) as caught:
        documents.save_template(admin, "acceptance_notice", dict(current["sections"], title=""))
    assert set(caught.value.fields) == {"title"}

    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    before = documents.list_documents(sub["code"], sub["token"])["items"][0]
    # Typed on a keyboard that sends decomposed accents (NFD): stored, and printed, composed.
    body = unicodedata.normalize("NFD", "Kính gửi {requester_name}: yêu cầu {code} được thụ lý; hạn {explain_by}. {{mẫu 2}}")
    saved = documents.save_template(admin, "acceptance_notice", dict(current["sections"], body=body))
    assert saved["version"] == 1
    later = submit()
    do(later["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    item = documents.list_documents(later["code"], later["token"])["items"][0]
    text = pdf_text(fetch(later["code"], later["token"], item))
    assert f"Kính gửi Nguyễn Văn An: yêu cầu {later['code']} được thụ lý" in text and "{mẫu 2}" in text
    # A document already issued keeps the text it was issued with.
    assert documents.list_documents(sub["code"], sub["token"])["items"][0] == before
    assert "Kính gửi" not in pdf_text(fetch(sub["code"], sub["token"], before))
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "document_template_changed")).scalar_one() == 1


# -- attachments ----------------------------------------------------------------------------------


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def docx_bytes() -> bytes:
    out = io.BytesIO()
    Docx().save(out)
    return out.getvalue()


def test_attachments_are_checked_by_content_not_by_name():
    assert files.check("anh.png", png_bytes()).content_type == "image/png"
    assert files.check("scan.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100).content_type == "image/jpeg"
    assert files.check("don.docx", docx_bytes()).filename == "don.docx"
    # Named like a PDF, but a Windows program: refused.
    with pytest.raises(files.Rejected):
        files.check("quyet-dinh.pdf", b"MZ\x90\x00\x03" + b"\0" * 200)
    # A PNG named .pdf is a PNG and is served under a .png name.
    assert files.check("quyet-dinh.pdf", png_bytes()).filename == "quyet-dinh.pdf.png"
    # A ZIP that is not an Office document: refused.
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("word/document.xml", "<x/>")
    with pytest.raises(files.Rejected):
        files.check("x.docx", plain.getvalue())
    # A Word document with macros, named .docx: refused.
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as source:
        macro = io.BytesIO()
        with zipfile.ZipFile(macro, "w") as archive:
            for name in source.namelist():
                archive.writestr(name, source.read(name))
            archive.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")
    with pytest.raises(files.Rejected):
        files.check("bieu-mau.docx", macro.getvalue())
    with pytest.raises(files.Rejected) as caught:
        files.check("big.pdf", b"%PDF-" + b"0" * (files.MAX_BYTES - 4))
    assert caught.value.too_large
    assert files.check("exact.pdf", b"%PDF-" + b"0" * (files.MAX_BYTES - 5)).size == files.MAX_BYTES
    assert files.clean_filename('../../etc/"pass\x00wd".png', "png") == "passwd.png"


def test_evidence_at_submission_and_signed_scans(world, people):
    with pytest.raises(ValidationFailed) as caught:
        attachments.check_all([("ok.png", png_bytes()), ("virus.pdf", b"MZ" + b"\0" * 64)])
    assert list(caught.value.fields) == ["attachments.1"]
    with pytest.raises(attachments.TooLarge) as caught:
        attachments.check_all([("big.pdf", b"%PDF-" + b"0" * files.MAX_BYTES)])
    assert caught.value.status == 413 and "10 MB" in caught.value.fields["attachments.0"]

    png = png_bytes()
    sub = requests.submit(dict(CITIZEN),
                          attachments=attachments.check_all([("ảnh hiện trạng.png", png)]))
    listed = attachments.list_attachments(sub["code"], sub["token"])["items"]
    assert [(a["kind"], a["filename"], a["size"]) for a in listed] == [("evidence", "ảnh hiện trạng.png", len(png))]
    got = attachments.download(sub["code"], listed[0]["id"], sub["token"])
    assert got["content"] == png and got["sha256"] == hashlib.sha256(png).hexdigest() == listed[0]["sha256"]
    assert files.path_for(got["sha256"]).read_bytes() == png

    scan = b"%PDF-1.4\n% signed scan\n"
    added = attachments.attach(sub["code"], [("ban-ky.pdf", scan)], people["lanhdao"], "Thông báo thụ lý đã ký")
    assert added[0]["kind"] == "signed_scan" and added[0]["uploaded_by"] == "lanhdao"
    assert len(attachments.list_attachments(sub["code"], actor=people["chuyenvien"])["items"]) == 2
    with pytest.raises(Forbidden):
        attachments.attach(sub["code"], [("ban-ky.pdf", scan)], people["chuyenvien2"])
    with pytest.raises(Forbidden):
        attachments.download(sub["code"], listed[0]["id"], actor=people["chuyenvien2"])
    other = submit()
    with pytest.raises(NotFound):
        attachments.download(sub["code"], listed[0]["id"], other["token"])
    with pytest.raises(NotFound):
        attachments.download(other["code"], listed[0]["id"], other["token"])


def test_the_server_renders_in_the_background_after_commit(world, people):
    documents.start_background_rendering()
    try:
        sub = submit()
        do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    finally:
        documents.stop_background_rendering()  # waits for the renderer
    with db.read_only() as session:
        row = session.execute(select(Document)).scalar_one()
        assert row.pdf_sha256 is not None and row.rendered_at is not None
    item, = documents.list_documents(sub["code"], sub["token"])["items"]
    assert fetch(sub["code"], sub["token"], item).startswith(b"%PDF-")


def test_retention_erases_documents_text_and_files_but_keeps_their_numbers(world, people, fixed_clock):
    from giaitrinh.engine.services import retention

    png = png_bytes()
    sub = requests.submit(dict(CITIZEN),
                          attachments=attachments.check_all([("bằng chứng.png", png)]))
    shared = requests.submit(dict(CITIZEN),
                             attachments=attachments.check_all([("cùng tệp.png", png)]))
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    item, = documents.list_documents(sub["code"], sub["token"])["items"]
    fixed_clock.advance(days=400)
    retention.purge(sub["code"])
    after, = documents.list_documents(sub["code"], sub["token"])["items"]
    assert (after["symbol"], after["sha256"], after["issued_at"]) == (item["symbol"], item["sha256"], item["issued_at"])
    with pytest.raises(NotFound):
        documents.download(sub["code"], item["id"], "pdf", sub["token"])
    with db.read_only() as session:
        row = session.get(Document, item["id"])
        assert "Nguyễn Văn An" not in str(row.fields)
    evidence, = attachments.list_attachments(sub["code"], sub["token"])["items"]
    assert evidence["filename"] == "[đã xóa]"
    # The same bytes are still another (not purged) case's evidence: the file stays for it.
    other, = attachments.list_attachments(shared["code"], shared["token"])["items"]
    assert attachments.download(shared["code"], other["id"], shared["token"])["content"] == png
    do(shared["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    fixed_clock.advance(days=400)
    retention.purge(shared["code"])
    assert not files.path_for(other["sha256"]).exists()
    with pytest.raises(NotFound):
        attachments.download(shared["code"], other["id"], shared["token"])


def test_concurrent_acceptances_get_consecutive_register_numbers(world, people):
    """Twelve officials accept twelve cases at the same moment: each notice has its own number,
    1 to 12 with no gap, and each case exactly one notice."""
    subs = [submit() for _ in range(12)]
    targets = iter([task_id(s["code"], "receive", people["tiepnhan"])
                    for s in subs])
    lock = threading.Lock()

    def accept():
        with lock:
            target = next(targets)
        tasks.complete(target, {"decision": "accept"}, people["tiepnhan"])

    results = _race(accept, len(subs))
    assert results == ["ok"] * len(subs), results
    with db.read_only() as session:
        numbers = sorted(session.execute(select(Document.number).where(Document.kind == "acceptance_notice")).scalars())
        per_case = session.execute(select(Document.request_id, func.count()).group_by(Document.request_id)).all()
    assert numbers == list(range(1, 13)) and all(n == 1 for _, n in per_case) and len(per_case) == 12


def test_backup_keeps_the_attached_files_and_restore_brings_them_back(world, people, tmp_path):
    from giaitrinh import backup

    png = png_bytes()
    sub = requests.submit(dict(CITIZEN), attachments=attachments.check_all([("ảnh.png", png)]))
    evidence, = attachments.list_attachments(sub["code"], sub["token"])["items"]
    target = backup.backup(world, tmp_path / "backup" / "giaitrinh.dump")
    kept = backup.files_dir(target) / evidence["sha256"][:2] / evidence["sha256"]
    assert kept.read_bytes() == png
    files.path_for(evidence["sha256"]).unlink()  # the disk holding the store was lost
    db.get_engine().dispose()
    backup.restore(world, target)
    assert attachments.download(sub["code"], evidence["id"], sub["token"])["content"] == png
    # A damaged copy in the backup stops the restore before the database is replaced.
    files.path_for(evidence["sha256"]).unlink()
    kept.write_bytes(b"not the evidence")
    later = submit()["code"]
    db.get_engine().dispose()
    with pytest.raises(backup.BackupError):
        backup.restore(world, target)
    assert requests.view(later, None, people["tiepnhan"])["code"] == later


def test_a_template_filled_leaves_no_blank_gap_where_a_value_is_empty():
    import itertools
    import re
    import string

    def by_expressions(text, values):  # what fill did before it looked for blanks first
        out = []
        for literal, name, _spec, _conv in string.Formatter().parse(text):
            out.append(literal)
            if name is not None:
                out.append(str(values.get(name) or ""))
        return re.sub(r"[ \t]+\n", "\n", re.sub(r"[ \t]{2,}", " ", "".join(out))).strip()

    pieces = ["Kính gửi {name}", " ", "  ", "\t", "\n", " \t\n", "{note}", "Ghi chú: {note}.", "\t\t", "x"]
    for count in (1, 2, 3):
        for parts in itertools.product(pieces, repeat=count):
            template = "".join(parts)
            for values in ({"name": "Ông An", "note": ""}, {"name": "", "note": "  đã nhận \t"}, {}):
                assert docs.fill(template, values) == by_expressions(template, values), (template, values)
