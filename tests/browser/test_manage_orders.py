"""The Manage Orders page where a buyer was misled (issue 14): the after-sale shown in words
and driven by the order's allowed actions, the seller's offer on the card, and the seller
console offered only to sellers. Real Chromium against a real server; screenshots in
artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db.models import F
from playwright.sync_api import expect

from chat_service.commerce.services import disputes, offers, orders
from chat_service.threads import services as chat
from chat_service.threads.models import Event, EventKind, Role
from tests.browser.conftest import Site, orm, screenshot
from tests.browser.test_web_ui import BUYER, buyer_orders, row, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _dispute(order_id: str, *, amount: str, return_item: bool) -> str:
    dispute = disputes.dispute_open(
        user_id=BUYER, order_id=order_id, reason="low_quality", refund_amount=amount, return_item=return_item
    )
    return str(dispute.pk)


def test_after_a_dispute_the_card_says_how_it_ended_and_offers_only_what_the_rules_allow(browser, site: Site) -> None:
    # A10010: a partial refund agreed, the item kept. A10009: a dispute escalated, still open.
    resolved = orm(lambda: _dispute("A10010", amount="10.00", return_item=False))
    orm(lambda: disputes.dispute_respond(user_id="seller-mori", dispute_id=resolved, action="accept"))
    escalated = orm(lambda: _dispute("A10009", amount="89.00", return_item=True))
    orm(lambda: disputes.dispute_escalate(user_id=BUYER, dispute_id=escalated))
    context, page = buyer_orders(browser, site)
    page.get_by_role("tab", name=re.compile(r"^Goods Awaiting Acceptance")).click()
    expect(page.locator(".om-order")).to_have_count(4)

    towels = row(page, "A10010")
    expect(towels.locator(".om-dispute")).to_have_text("Dispute resolved: USD 10.00 refunded, item kept.")
    expect(towels.get_by_role("button", name="Confirm Goods Received")).to_have_count(0)
    expect(towels.get_by_role("button", name="Open Dispute")).to_have_count(0)
    speakers = row(page, "A10009")
    expect(speakers.locator(".om-dispute")).to_have_text("Dispute escalated: the marketplace is deciding.")
    # Confirming receipt would release the payment in the middle of the dispute.
    expect(speakers.get_by_role("button", name="Confirm Goods Received")).to_have_count(0)
    # An order without a dispute still offers both.
    lamp = row(page, "A10011")
    expect(lamp.get_by_role("button", name="Confirm Goods Received")).to_be_visible()
    expect(lamp.get_by_role("button", name="Open Dispute")).to_be_visible()
    for card in (towels, speakers):  # no internal codes on the card
        expect(card).not_to_contain_text("awaiting_return")
        expect(card).not_to_contain_text("escalated ·")
    towels.scroll_into_view_if_needed()
    screenshot(page, "orders-dispute-outcome")

    towels.get_by_role("button", name="View Detail").click()
    expect(page.locator(".om-detail")).to_contain_text("Dispute resolved: USD 10.00 refunded, item kept.")
    expect(page.locator(".om-detail")).to_contain_text("Reason: Low quality.")
    context.close()


def test_the_sellers_open_offer_is_on_the_card_and_the_buyer_accepts_it_there(browser, site: Site) -> None:
    orm(lambda: offers.offer_make(user_id="seller-lumen", order_id="A10001", price="21.00"))
    context, page = buyer_orders(browser, site)
    card = row(page, "A10001")
    offer = card.get_by_role("group", name="Offer on order A10001")
    expect(offer).to_contain_text("The seller offers a new price: USD 21.00")
    expect(offer.locator(".om-offer-expiry")).to_contain_text("until")
    screenshot(page, "orders-offer-on-card")
    offer.get_by_role("button", name="Accept offer").click()
    # The local order system confirms the price (worker job); the card follows live.
    expect(card.locator(".om-amount")).to_have_text("USD 21.00")
    expect(card.locator(".om-offer")).to_have_count(0)
    context.close()


def test_the_seller_console_is_offered_to_sellers_only(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site)
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link", name="Manage Orders")).to_be_visible()
    expect(nav.get_by_role("link", name="Seller console")).to_have_count(0)
    context.close()
    context, page = sign_in(browser, site, "seller-lumen")
    expect(page.get_by_role("navigation", name="Pages").get_by_role("link", name="Seller console")).to_be_visible()
    context.close()


def test_beside_a_grey_indicator_the_card_says_when_the_seller_usually_replies(browser, site: Site) -> None:
    # The demo's replies were seeded at once; this seller answers 25 minutes after the buyer.
    def slow_replies() -> None:
        replies = Event.objects.filter(
            thread__seller_id="seller-lumen", author_role=Role.SELLER, kind=EventKind.MESSAGE
        )
        assert replies.update(created_at=F("created_at") + timedelta(minutes=25))

    orm(slow_replies)
    context, page = buyer_orders(browser, site)
    indicator = row(page, "A10001").locator("seller-status")
    expect(indicator).to_have_attribute("data-status", "offline")
    expect(indicator.locator(".oc-status-reply")).to_have_text(re.compile(r"^· usually replies within \d+ (min|h)$"))
    screenshot(page, "orders-offline-reply-time")
    context.close()


def test_search_forgives_and_lives_in_the_url_so_reload_and_back_keep_it(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site)
    form = page.get_by_role("search")
    form.get_by_label("Order ID").fill("a1000")  # lower case, the start of the id
    form.get_by_role("button", name="Search").click()
    expect(page.locator(".om-order")).to_have_count(9)  # A10001 ... A10009
    expect(page).to_have_url(re.compile(r"[?&]order_id=a1000"))
    page.reload()
    expect(page.locator(".om-order")).to_have_count(9)
    expect(form.get_by_label("Order ID")).to_have_value("a1000")

    form.get_by_label("Order ID").fill("")
    form.get_by_label("Tracking number").fill("lp0041299")  # the start of A10009's number
    form.get_by_role("button", name="Search").click()
    expect(page.locator(".om-order")).to_have_count(1)
    expect(row(page, "A10009")).to_be_visible()
    screenshot(page, "orders-search-in-url")

    page.go_back()
    expect(page.locator(".om-order")).to_have_count(9)
    expect(form.get_by_label("Order ID")).to_have_value("a1000")
    expect(form.get_by_label("Tracking number")).to_have_value("")
    page.go_back()
    expect(page.locator(".om-order")).to_have_count(10)  # the first page of all orders
    expect(form.get_by_label("Order ID")).to_have_value("")
    context.close()


def test_the_detail_timeline_shows_each_step_once_in_the_viewers_person(browser, site: Site) -> None:
    orm(lambda: orders.order_confirm_receipt(user_id=BUYER, order_id="A10011"))
    orm(lambda: orders.order_leave_feedback(user_id=BUYER, order_id="A10011", rating=5))
    context, page = buyer_orders(browser, site)
    page.get_by_role("search").get_by_label("Order ID").fill("A10011")
    page.get_by_role("search").get_by_role("button", name="Search").click()
    expect(page.locator(".om-order")).to_have_count(1)
    row(page, "A10011").get_by_role("button", name="View Detail").click()
    steps = page.locator(".om-timeline li")
    expect(steps.filter(has_text="You confirmed that the goods arrived.")).to_have_count(1)
    expect(steps.filter(has_text="You left feedback")).to_have_count(1)
    expect(steps.filter(has_text="confirmed receipt")).to_have_count(0)  # not a second time
    expect(steps.filter(has_text="Feedback left")).to_have_count(0)
    expect(page.locator(".om-timeline")).not_to_contain_text("The buyer")
    screenshot(page, "orders-detail-timeline")
    context.close()


def test_the_disputes_tab_keeps_the_history_with_outcomes_open_ones_on_top(browser, site: Site) -> None:
    resolved = orm(lambda: _dispute("A10010", amount="10.00", return_item=False))
    orm(lambda: disputes.dispute_respond(user_id="seller-mori", dispute_id=resolved, action="accept"))
    withdrawn = orm(lambda: _dispute("A10009", amount="89.00", return_item=True))
    orm(lambda: disputes.dispute_cancel(user_id=BUYER, dispute_id=withdrawn))
    orm(lambda: _dispute("A10008", amount="54.99", return_item=True))
    context, page = buyer_orders(browser, site)
    page.get_by_role("tab", name=re.compile(r"^Disputes \(1\)")).click()  # the count: open disputes
    items = page.locator(".om-dispute-item")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_have_attribute("data-order-id", "A10008")
    expect(items.nth(0).locator(".om-dispute")).to_have_text(
        "Dispute open: waiting for the seller's answer to your request for USD 54.99."
    )
    expect(items.nth(1)).to_have_attribute("data-order-id", "A10009")  # the newer of the past ones
    expect(items.nth(1).locator(".om-dispute")).to_have_text("You withdrew your dispute.")
    expect(items.nth(2)).to_have_attribute("data-order-id", "A10010")
    expect(items.nth(2).locator(".om-dispute")).to_have_text("Dispute resolved: USD 10.00 refunded, item kept.")
    expect(page.get_by_role("heading", name="Open disputes")).to_be_visible()
    expect(page.get_by_role("heading", name="Past disputes")).to_be_visible()
    expect(page.get_by_role("search")).to_be_hidden()  # order filters do not apply here
    screenshot(page, "orders-disputes-history")
    page.reload()  # the tab is in the URL
    expect(items).to_have_count(3)
    items.nth(2).get_by_role("button", name="View order A10010").click()
    expect(page.locator(".om-detail")).to_contain_text("Dispute resolved")
    context.close()


def test_the_try_it_first_tip_shows_for_electronics_only_wherever_feedback_can_be_left(browser, site: Site) -> None:
    tip = "Tip: use electronics for a few days before you leave feedback"
    warning = "Leaving feedback ends the chance to open a dispute for this order."
    context, page = buyer_orders(browser, site)
    page.get_by_role("tab", name=re.compile(r"^Goods Awaiting Acceptance")).click()
    panel = page.get_by_role("complementary", name="Order panel")
    for order_id, electronics in (("A10011", True), ("A10010", False)):  # a desk lamp, bath towels
        row(page, order_id).get_by_role("button", name="Confirm Goods Received").click()
        panel.get_by_label("Leave feedback now").check()
        expect(panel).to_contain_text(warning)
        expect(panel.get_by_text(tip)).to_have_count(1 if electronics else 0)
        if electronics:
            screenshot(page, "orders-confirm-electronics-tip")
        panel.get_by_role("button", name="Close").click()

    # The standalone Leave Feedback panel of completed orders: headphones, a sweatshirt.
    page.get_by_role("tab", name=re.compile(r"^All")).click()
    for order_id, electronics in (("A10014", True), ("A10012", False)):
        form = page.get_by_role("search")
        form.get_by_label("Order ID").fill(order_id)
        form.get_by_role("button", name="Search").click()
        expect(page.locator(".om-order")).to_have_count(1)
        row(page, order_id).get_by_role("button", name="Leave Feedback").click()
        expect(panel).to_contain_text(warning)
        expect(panel.get_by_text(tip)).to_have_count(1 if electronics else 0)
        panel.get_by_role("button", name="Close").click()
    context.close()


def test_a_long_thread_opens_at_the_first_unread_below_a_divider_or_at_its_newest(browser, site: Site) -> None:
    def seed() -> None:
        for n in range(1, 31):  # the buyer has read these
            chat.message_send(user_id=BUYER, order_id="A10002", client_msg_id=f"b{n}", body=f"Question {n}")
        for n in range(1, 9):  # ... and not these
            chat.message_send(user_id="seller-tessa", order_id="A10002", client_msg_id=f"s{n}", body=f"Answer {n}")
        for n in range(1, 41):  # a long thread, all read
            chat.message_send(user_id=BUYER, order_id="A10003", client_msg_id=f"q{n}", body=f"Note {n}")

    orm(seed)
    context, page = buyer_orders(browser, site, width=1366, height=700)
    row(page, "A10002").get_by_role("button", name="Contact Seller").click()
    log = page.locator("order-chat .oc-log")
    divider = log.locator(".oc-unread-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("New messages")
    expect(divider).to_be_in_viewport()
    expect(log.get_by_text("Answer 1", exact=True)).to_be_in_viewport()
    screenshot(page, "chat-opens-at-first-unread")
    page.get_by_role("button", name="Close").click()

    row(page, "A10003").get_by_role("button", name="Contact Seller").click()
    expect(log.get_by_text("Note 40", exact=True)).to_be_in_viewport()
    expect(log.locator(".oc-unread-divider")).to_have_count(0)
    context.close()


CONTRAST = """(el) => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  let bg = null;
  for (let n = el; n; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length < 4 || c[3] > 0) { bg = c; break; }
  }
  bg = bg || [255, 255, 255];
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_the_page_works_from_the_keyboard_and_reads_well(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site)
    # Tabs are tabs: arrow keys move and show, the panel is labelled by the selected one.
    page.get_by_role("tab", name=re.compile(r"^All")).focus()
    page.keyboard.press("ArrowRight")
    payment = page.get_by_role("tab", name=re.compile(r"^Awaiting Payment"))
    expect(payment).to_have_attribute("aria-selected", "true")
    expect(payment).to_be_focused()
    expect(page.locator(".om-order")).to_have_count(3)
    expect(page.get_by_role("tabpanel")).to_have_attribute("aria-labelledby", "om-tab-awaiting_payment")
    page.keyboard.press("Home")
    expect(page.get_by_role("tab", name=re.compile(r"^All"))).to_be_focused()

    # Every button names its order; the panel dims the page; Escape closes it from
    # anywhere and focus returns to the button that opened it.
    contact = page.get_by_role("button", name="Contact seller about order A10002", exact=True)
    contact.click()
    expect(page.locator(".om-backdrop")).to_be_visible()
    screenshot(page, "orders-panel-backdrop")
    page.evaluate("document.activeElement.blur()")  # focus leaves the panel (to the body)
    page.keyboard.press("Escape")
    expect(page.get_by_role("complementary", name="Order panel")).to_be_hidden()
    expect(page.locator(".om-backdrop")).to_be_hidden()
    expect(contact).to_be_focused()

    # Text a buyer reads has a contrast of at least 4.5:1.
    for selector in (".om-props", ".om-tab", ".om-unread", ".oc-status-text", ".pg-top nav a", ".om-status"):
        ratio = page.locator(selector).first.evaluate(CONTRAST)
        assert ratio >= 4.5, (selector, ratio)
    context.close()


def test_on_a_phone_tap_targets_are_44_px_and_the_tabs_show_that_they_scroll(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site, width=390, height=844)
    for button in row(page, "A10001").get_by_role("button").all():
        box = button.bounding_box()
        assert box and box["height"] >= 44 and box["width"] >= 44, (button.text_content(), box)
    tabs = page.locator(".om-tabs")
    expect(tabs).to_have_class(re.compile(r"\bom-tabs-more\b"))  # more tabs off screen
    tabs.evaluate("(el) => el.scrollTo(el.scrollWidth, 0)")
    expect(tabs).not_to_have_class(re.compile(r"\bom-tabs-more\b"))
    screenshot(page, "orders-phone")
    context.close()


def test_an_incoming_message_updates_the_console_inbox_in_place_without_stealing_focus(browser, site: Site) -> None:
    context, page = sign_in(browser, site, "seller-lumen")
    page.goto(f"{site.url}/console/?order=A10001")
    expect(page.locator("order-chat .oc-title")).to_contain_text("A10001")
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url) if "/api/threads/?" in request.url else None)
    keyboard_thread = page.locator('.cs-thread[data-order-id="A10006"] button')
    keyboard_thread.focus()

    orm(lambda: chat.message_send(user_id=BUYER, order_id="A10011", client_msg_id="lamp-1", body="Does it dim?"))
    lamp = page.locator('.cs-thread[data-order-id="A10011"]')
    expect(lamp.locator(".cs-last")).to_contain_text("Does it dim?")
    expect(lamp.locator(".oc-badge")).to_be_visible()
    expect(keyboard_thread).to_be_focused()  # the inbox was not rebuilt under the keyboard
    expect(page.locator(".cs-thread").first).to_have_attribute("data-order-id", "A10011")  # newest first
    screenshot(page, "console-inbox-in-place")
    assert fetched == [], fetched  # no refetch of the thread list for a pushed message
    context.close()
