"""A citizen submits a request through the portal form in a real browser and follows it."""
import re

from playwright.sync_api import expect


def test_citizen_submits_through_the_portal_and_follows_the_request(page, live_server):
    page.goto("/gui-yeu-cau")
    page.fill("#f-requester-name", "Nguyễn Thị Hoà")
    page.fill("#f-requester-address", "12 Lê Lợi, phường Mỹ Xuyên")
    page.fill("#f-requester-phone", "0912345678")
    page.fill("#f-subject", "Quyết định thu hồi đất số 15/QĐ-UBND")
    page.fill("#f-content", "Đề nghị giải trình căn cứ pháp lý của việc thu hồi đất.")
    with page.expect_navigation():
        page.click("main form button.primary")

    # The tracking page shows the new code, the secret link once, and the acknowledgement deadline.
    expect(page.locator("input.copy")).to_have_value(re.compile(r"/yeu-cau/GT-\d{4}-\d{6}\?token="))
    expect(page.locator("main")).to_contain_text("Quyết định thu hồi đất số 15/QĐ-UBND")
    link = page.locator("input.copy").input_value()

    # The link alone (a new visitor, no cookies) opens the request; a wrong token does not.
    other = page.context.browser.new_context(base_url=live_server.url)
    try:
        visitor = other.new_page()
        visitor.goto(link)
        expect(visitor.locator("main")).to_contain_text("Quyết định thu hồi đất số 15/QĐ-UBND")
        response = visitor.goto(link.split("token=")[0] + "token=not-the-token")
        assert response.status == 404
    finally:
        other.close()


def test_the_portal_form_says_which_field_is_missing(page):
    page.goto("/gui-yeu-cau")
    page.fill("#f-requester-name", "Trần Văn Bình")
    page.click("main form button.primary")
    expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    expect(page.locator("#f-requester-name")).to_have_value("Trần Văn Bình")  # nothing typed is lost
