"""A supervisor in a real browser: an overdue case marked on its BPMN diagram, reassigned; the
heatmap; a bulk urge with its progress bar."""
import re

from playwright.sync_api import expect

from .conftest import sign_in


def test_supervisor_sees_an_overdue_case_on_the_diagram_and_reassigns_it(page):
    sign_in(page, "thanhtra")
    page.goto("/giam-sat/ho-so/?overdue=true&step=receive")
    rows = page.locator("table.list tbody tr[data-code]")
    expect(rows.first).to_be_visible()
    code = rows.first.get_attribute("data-code")
    with page.expect_navigation():
        rows.first.locator("a").first.click()
    assert page.url.endswith(f"/giam-sat/ho-so/{code}")

    # The diagram is drawn by bpmn-js; the waiting task is marked current and late, the path behind it done.
    expect(page.locator("#case-diagram")).to_have_attribute("data-ready", "true")
    receive = page.locator('#case-diagram g.djs-element[data-element-id="receive"]')
    expect(receive).to_have_class(re.compile(r"\bgt-active\b"))
    expect(receive).to_have_class(re.compile(r"\bgt-late\b"))
    expect(page.locator('#case-diagram g.djs-element[data-element-id="start"]')).to_have_class(re.compile(r"\bgt-done\b"))

    # Reassign the receive task to the reception officer, with a reason; nothing is suspended.
    task = page.locator('.open-tasks li[data-step="receive"]')
    task.locator("summary").click()
    task.locator("form.reassign select[name=assignee]").select_option("tiepnhan")
    task.locator("form.reassign input[name=note]").fill("Giao cho cán bộ tiếp nhận xử lý ngay")
    with page.expect_navigation():
        task.locator("form.reassign button").click()
    expect(page.locator(".flash.success")).to_contain_text("Đã giao lại công việc")
    expect(page.locator('.open-tasks li[data-step="receive"] .assignee')).to_have_text("tiepnhan")
    expect(page.locator("ol.trail")).to_contain_text("Giao cho cán bộ tiếp nhận xử lý ngay")
    expect(page.locator("main")).not_to_contain_text("Tiếp tục giải trình")  # not suspended


def test_the_heatmap_counts_open_tasks_on_the_diagram(page):
    sign_in(page, "thanhtra")
    page.goto("/giam-sat/ban-do-nhiet")
    expect(page.locator("#heatmap-diagram")).to_have_attribute("data-ready", "true")
    receive = page.locator('#heatmap-diagram g.djs-element[data-element-id="receive"]')
    expect(receive).to_have_class(re.compile(r"\bgt-heat-\d\b"))
    expected = page.locator('tr[data-element="receive"] td').nth(1).inner_text()
    chip = page.locator('#heatmap-diagram .djs-overlays[data-container-id="receive"] .count-chip').first
    expect(chip).to_have_text(expected)


def test_bulk_urge_shows_progress_and_each_result(page):
    sign_in(page, "thanhtra")
    page.goto("/giam-sat/ho-so/?closed=false")
    boxes = page.locator("input[name=codes]")
    expect(boxes.first).to_be_visible()
    codes = [boxes.nth(i).get_attribute("value") for i in range(3)]
    for i in range(3):
        boxes.nth(i).check()
    page.select_option("#bulk-action", "urge")
    page.fill(".bulk-actions input[name=note]", "Đề nghị hoàn thành trong tuần")
    page.click("#bulk-run")
    expect(page.locator("#bulk-status")).to_have_attribute("data-done", "true")
    expect(page.locator("#bulk-progress")).to_have_attribute("value", "3")
    results = page.locator("#bulk-results li")
    expect(results).to_have_count(3)
    assert {results.nth(i).get_attribute("data-code") for i in range(3)} == set(codes)
