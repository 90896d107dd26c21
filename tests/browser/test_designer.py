"""A process designer adds a step to the deployed lifecycle in the browser's modeler (bpmn-js):
palette, validation problems listed and marked on the diagram, the side panel, the form editor
with its live preview, save, deploy; then the versions list shows the change, and rolls it back."""
import json
import re

from playwright.sync_api import expect

from .conftest import sign_in

REVIEW_FORM = {"title": "Thẩm định pháp lý", "type": "object",
               "properties": {"opinion": {"title": "Ý kiến pháp chế", "type": "string", "x-widget": "textarea"}},
               "required": ["opinion"], "additionalProperties": False}


def _screen_point(page, x: float, y: float) -> tuple[float, float]:
    """Where the diagram point (x, y) is on the screen, from the canvas' own viewbox."""
    return page.evaluate("""([x, y]) => {
        const canvas = window.giaitrinhModeler.get('canvas');
        const box = canvas.viewbox();
        const rect = canvas.getContainer().getBoundingClientRect();
        return [rect.left + (x - box.x) * box.scale, rect.top + (y - box.y) * box.scale];
    }""", [x, y])


def _row(page, version: int):
    return page.locator(f"table.versions tr[data-version='{version}']")


def test_a_designer_adds_a_step_saves_sees_problems_fixes_them_and_deploys(page, live_server):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, "thietke")
    page.goto("/thiet-ke/")
    expect(_row(page, 1)).to_have_attribute("data-status", "deployed")
    expect(_row(page, 1)).to_contain_text("thietke")  # who deployed it
    with page.expect_navigation():
        _row(page, 1).locator("a.open-modeler").click()
    expect(page.locator("#modeler")).to_have_attribute("data-state", "ready")
    expect(page.locator(".djs-element[data-element-id='approve']")).to_be_visible()

    # The palette's task, dropped on the flow from the official's draft to the head's approval
    # (its vertical segment at x=1460 in the head's lane): bpmn-js splits the flow around it.
    page.click(".djs-palette .entry[data-action='create.task']")
    x, y = _screen_point(page, 1460, 530)
    page.mouse.move(x - 40, y - 40)
    page.mouse.move(x, y, steps=8)
    page.mouse.click(x, y)
    page.keyboard.type("Thẩm định pháp lý")
    page.mouse.click(*_screen_point(page, 1800, 480))  # empty canvas: ends the label editing
    new_id = page.evaluate("""() => window.giaitrinhModeler.get('elementRegistry')
        .filter(e => e.type === 'bpmn:Task').map(e => e.id)""")
    assert len(new_id) == 1, new_id
    new_id = new_id[0]
    flows = page.evaluate(f"""() => {{
        const task = window.giaitrinhModeler.get('elementRegistry').get('{new_id}');
        return [task.incoming.map(f => f.source.id), task.outgoing.map(f => f.target.id)];
    }}""")
    assert flows == [["gw_explain"], ["approve"]], flows

    # Checking (nothing saved) and saving both refuse it: a plain task is not a step the engine can run.
    page.click("#btn-validate")
    expect(page.locator(f"#problems li[data-element-id='{new_id}']")).to_contain_text("user task")
    page.click("#btn-save")
    expect(page.locator("#modeler-status")).to_contain_text("vấn đề")
    problem = page.locator(f"#problems li[data-element-id='{new_id}']")
    expect(problem).to_contain_text("user task")
    expect(page.locator(f".djs-element.gt-problem[data-element-id='{new_id}']")).to_be_visible()
    expect(page.locator(".djs-overlay-gt-problem .gt-badge").first).to_be_visible()

    # The problem selects its element; the side panel turns it into a user task with a step key.
    problem.click()
    expect(page.locator("#prop-id")).to_have_value(new_id)
    page.click("#make-user-task")
    expect(page.locator("#props")).to_contain_text("UserTask")
    page.fill("#prop-id", "legal_review")
    page.press("#prop-id", "Tab")
    page.click("#btn-save")
    problem = page.locator("#problems li[data-element-id='legal_review']")
    expect(problem.first).to_contain_text("no form")
    expect(page.locator(".djs-element.gt-problem[data-element-id='legal_review']")).to_be_visible()

    # Fix it: the head of unit's lane, a new form written in the form editor with its live preview.
    problem.first.click()
    page.select_option("#prop-lane", "Lane_head")
    page.select_option("#prop-form", "__new__")
    expect(page.locator("#form-panel")).to_be_visible()
    expect(page.locator("#form-name")).to_have_text("legal_review.json")
    page.fill("#form-json", '{"type": "object", "properties": {"opinion": {"type": "strin"}}}')
    expect(page.locator("#form-problems")).to_contain_text("JSON Schema")
    page.fill("#form-json", json.dumps(REVIEW_FORM, ensure_ascii=False))
    expect(page.locator("#form-problems")).to_contain_text("hợp lệ")
    expect(page.locator("#form-preview label[for='f-opinion']")).to_contain_text("Ý kiến pháp chế")
    expect(page.locator("#form-preview textarea[name='opinion']")).to_be_visible()

    # The law changed too: 10 days to explain instead of 15, a property of this version.
    expect(page.locator("#period-explain_days")).to_have_value("15")
    page.fill("#period-explain_days", "10")
    page.press("#period-explain_days", "Tab")

    page.click("#btn-save")
    expect(page.locator("#modeler-status")).to_contain_text("Đã lưu bản nháp phiên bản 2")
    expect(page.locator(".djs-element.gt-problem")).to_have_count(0)
    expect(page.locator("#btn-deploy")).to_be_enabled()
    page.click("#btn-deploy")
    expect(page.locator("#modeler-status")).to_contain_text("Đã triển khai phiên bản 2")

    # The versions list: v2 deployed by the designer, v1 retired; the diagram kept the new step and its form.
    page.goto("/thiet-ke/")
    expect(_row(page, 2)).to_have_attribute("data-status", "deployed")
    expect(_row(page, 1)).to_have_attribute("data-status", "retired")
    expect(_row(page, 2)).to_contain_text(re.compile(r"[0-9a-f]{12}"))
    expect(_row(page, 2).locator(".periods")).to_contain_text("giải trình 10 ngày")
    expect(_row(page, 1).locator(".periods")).to_contain_text("giải trình 15 ngày")
    bpmn = page.request.get(_row(page, 2).locator("a[href$='/tai-ve']").get_attribute("href"))
    assert bpmn.ok and 'id="legal_review"' in bpmn.text() and "legal_review.json" in bpmn.text()
    # SpiffWorkflow's extensions went through bpmn-js untouched: instructions, periods, rules.
    for kept in ("<spiffworkflow:instructionsForEndUser>Kiểm tra điều kiện tiếp nhận", 'name="period.explain_days" value="10"',
                 'name="rule:extend:message"'):
        assert kept in bpmn.text(), kept

    # Roll back, so the other browser tests keep the shipped lifecycle: v1 deployed again, v2 retired.
    with page.expect_navigation():
        _row(page, 1).locator("form.deploy button").click()
    expect(_row(page, 1)).to_have_attribute("data-status", "deployed")
    expect(_row(page, 2)).to_have_attribute("data-status", "retired")


def test_a_designer_moves_running_requests_after_a_dry_run(page, live_server):
    from ..helpers import CITIZEN
    from ..test_design import REVIEW_FORM as FORM, with_legal_review

    api = page.request
    token = api.post("/api/v1/auth/token", data={"username": "thietke", "password": "demo"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    listed = api.get("/api/v1/definitions", headers=bearer).json()["items"]
    source = next(d for d in listed if d["status"] == "deployed")
    codes = [api.post("/api/v1/requests", data=CITIZEN).json()["code"] for _ in range(3)]
    target = api.post("/api/v1/definitions", headers=bearer, data={
        "bpmn": with_legal_review().decode(), "forms": {"legal_review.json": FORM}}).json()
    assert api.post(f"/api/v1/definitions/{target['id']}/deploy", headers=bearer).ok

    sign_in(page, "thietke")
    page.goto(f"/thiet-ke/{source['id']}/chuyen-doi")
    page.select_option("#target", str(target["id"]))
    page.click("#btn-dry-run")
    expect(page.locator("#migration")).to_have_attribute("data-dry-run", "done")
    for code in codes:
        expect(page.locator(f"#migration-table tr[data-code='{code}']")).to_have_class("m-ok")
    expect(page.locator("#migration-status")).to_contain_text("chuyển được")
    page.click("#btn-migrate")
    expect(page.locator("#migration")).to_have_attribute("data-migration", "done")
    expect(page.locator("#migration-progress")).to_be_visible()
    assert page.locator("#migration-progress").evaluate("p => p.value === p.max && p.max > 0")
    for code in codes:
        expect(page.locator(f"#migration-table tr[data-code='{code}'] td").nth(2)).to_have_text("Đã chuyển")
    versions = {d["id"]: d for d in api.get("/api/v1/definitions", headers=bearer).json()["items"]}
    assert versions[target["id"]]["running"] >= 3

    # Back to the shipped lifecycle for new requests (the moved ones keep the version they now run).
    assert api.post(f"/api/v1/definitions/{source['id']}/deploy", headers=bearer).ok
