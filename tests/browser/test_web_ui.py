"""The service's faces in real headless Chromium: the Manage Orders page (buyer), the seller
console and the chat widget, two browser contexts (buyer and seller) on one real server.

Screenshots of the main screens go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from chat_service import demo_data
from tests.browser.conftest import Site, orm, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUYER = demo_data.BUYER.id
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


def sign_in(browser, site: Site, user_id: str, *, width: int = 1280, height: int = 900) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="Europe/Berlin")
    page = context.new_page()
    page.goto(f"{site.url}/login/")
    page.click(f"button[name=user_id][value='{user_id}']")
    page.wait_for_url(re.compile(r"/(orders|console)/"))
    return context, page


def buyer_orders(browser, site: Site, **viewport: int) -> tuple[BrowserContext, Page]:
    context, page = sign_in(browser, site, BUYER, **viewport)
    expect(page.locator(".om-order").first).to_be_visible()
    return context, page


def seller_console(browser, site: Site, seller_id: str, order_id: str) -> tuple[BrowserContext, Page]:
    context, page = sign_in(browser, site, seller_id)
    page.goto(f"{site.url}/console/?order={order_id}")
    expect(chat(page).locator(".oc-title")).to_contain_text(order_id)
    return context, page


def row(page: Page, order_id: str):
    return page.locator(f'.om-order[data-order-id="{order_id}"]')


def chat(page: Page):
    return page.locator("order-chat")


def open_chat(page: Page, order_id: str) -> None:
    row(page, order_id).get_by_role("button", name="Contact Seller").click()
    expect(chat(page).locator(".oc-title")).to_contain_text(order_id)


def send(page: Page, text: str) -> None:
    box = chat(page).get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def bodies(page: Page) -> list[str]:
    return chat(page).locator(".oc-events .oc-msg .oc-body").all_text_contents()


def test_buyer_and_seller_chat_live_and_the_indicator_follows_the_console(browser, site: Site) -> None:
    seller_ctx, seller = seller_console(browser, site, "seller-lumen", "A10001")
    buyer_ctx, buyer = buyer_orders(browser, site)
    indicator = row(buyer, "A10001").locator("seller-status")
    expect(indicator).to_contain_text("Online")
    expect(indicator).to_have_attribute("data-status", "online")
    screenshot(buyer, "orders-page")

    # Click on orange opens the chat.
    indicator.get_by_role("button").click()
    expect(chat(buyer).locator(".oc-title")).to_contain_text("A10001")
    send(buyer, "Is the charger still available?")
    expect(chat(seller).locator(".oc-events")).to_contain_text("Is the charger still available?")
    chat(seller).get_by_label("Message").press_sequentially("Yes")
    expect(chat(buyer).locator(".oc-typing")).to_contain_text("typing")
    send(seller, "Yes, it ships tomorrow.")
    expect(chat(buyer).locator(".oc-events")).to_contain_text("Yes, it ships tomorrow.")
    send(buyer, "Great!")
    expect(chat(buyer).locator(".oc-seen")).to_have_text("Seen")  # the seller's console has it open
    screenshot(buyer, "orders-chat-panel")
    screenshot(seller, "seller-console")

    # The seller closes the console: grey after the grace period; back: orange.
    seller.close()
    expect(indicator).to_contain_text("Offline")
    expect(indicator).to_have_attribute("data-status", "offline")
    seller = seller_ctx.new_page()
    seller.goto(f"{site.url}/console/?order=A10001")
    expect(indicator).to_contain_text("Online")
    expect(chat(seller).locator(".oc-events")).to_contain_text("Great!")
    buyer_ctx.close()
    seller_ctx.close()


def test_offer_requested_made_accepted_changes_the_amount_live(browser, site: Site) -> None:
    buyer_ctx, buyer = buyer_orders(browser, site)
    seller_ctx, seller = seller_console(browser, site, "seller-lumen", "A10001")
    expect(row(buyer, "A10001").locator(".om-amount")).to_have_text("USD 24.99")
    open_chat(buyer, "A10001")
    chat(buyer).get_by_label("Note to the seller (optional)").fill("Would you take 20?")
    chat(buyer).get_by_role("button", name="Request offer").click()

    expect(chat(seller).locator(".oc-offer")).to_contain_text("The buyer asked for a better price.")
    chat(seller).get_by_label("Offer price (USD)").fill("20.00")
    chat(seller).get_by_role("button", name="Make offer").click()

    expect(chat(buyer).locator(".oc-offer-price")).to_contain_text("USD 20.00")
    screenshot(buyer, "offer-card")
    chat(buyer).get_by_role("button", name="Accept offer").click()
    # The local order system confirms the price (worker job), and the row follows live.
    expect(row(buyer, "A10001").locator(".om-amount")).to_have_text("USD 20.00")
    expect(chat(buyer).locator(".oc-events")).to_contain_text("Price changed")
    expect(chat(seller).locator(".oc-subtitle")).to_contain_text("USD 20.00")
    buyer_ctx.close()
    seller_ctx.close()


def test_dispute_opened_countered_accepted_then_receipt_and_feedback_end_disputes(browser, site: Site) -> None:
    buyer_ctx, buyer = buyer_orders(browser, site)
    seller_ctx, seller = seller_console(browser, site, "seller-kite", "A10008")

    row(buyer, "A10008").get_by_role("button", name="Open Dispute").click()
    panel = chat(buyer)
    panel.get_by_label("Reason").select_option("wrong_colour")
    panel.get_by_label("Refund amount (USD)").fill("20.00")
    panel.get_by_label("Details").fill("It is red, not orange.")
    screenshot(buyer, "dispute-form")
    panel.get_by_role("button", name="Submit dispute").click()
    expect(panel.locator(".oc-dispute-status")).to_contain_text("Open")

    expect(chat(seller).locator(".oc-dispute")).to_contain_text("Wrong colour")
    chat(seller).get_by_label("Counter offer: refund amount").fill("10.00")
    chat(seller).get_by_role("button", name="Send counter offer").click()

    expect(panel.locator(".oc-counter")).to_contain_text("USD 10.00")
    panel.get_by_role("button", name="Accept counter offer").click()
    expect(panel.locator(".oc-dispute-status")).to_contain_text("Resolved")
    expect(chat(seller).locator(".oc-dispute-status")).to_contain_text("Resolved")
    expect(panel.get_by_role("button", name="Accept counter offer")).to_have_count(0)
    screenshot(buyer, "dispute-resolved")
    buyer.get_by_role("button", name="Close").click()

    # Confirm receipt with feedback: Open Dispute is gone for good.
    order = row(buyer, "A10009")
    expect(order.get_by_role("button", name="Open Dispute")).to_be_visible()
    order.get_by_role("button", name="Confirm Goods Received").click()
    dialog = buyer.locator(".om-panel")
    expect(dialog).to_contain_text("use electronics for a few days")
    expect(dialog).to_contain_text("Leaving feedback ends the chance to open a dispute")
    dialog.get_by_label("Leave feedback now").check()
    dialog.get_by_label("Rating").select_option("5")
    dialog.get_by_label("Comment (optional)").fill("Sounds great.")
    screenshot(buyer, "confirm-receipt")
    dialog.get_by_role("button", name="Confirm Goods Received").click()
    expect(order.locator(".om-status")).to_contain_text("Completed")
    expect(order.get_by_role("button", name="Open Dispute")).to_have_count(0)
    expect(order.get_by_role("button", name="Confirm Goods Received")).to_have_count(0)
    buyer.reload()
    expect(row(buyer, "A10009").locator(".om-status")).to_contain_text("Completed")
    expect(row(buyer, "A10009").get_by_role("button", name="Open Dispute")).to_have_count(0)
    buyer_ctx.close()
    seller_ctx.close()


def test_messages_sent_while_the_buyer_is_offline_arrive_once_in_order(browser, site: Site) -> None:
    buyer_ctx, buyer = buyer_orders(browser, site)
    seller_ctx, seller = seller_console(browser, site, "seller-vega", "A10004")
    open_chat(buyer, "A10004")
    expect(chat(buyer).locator(".oc-events")).to_contain_text("Great, thank you!")

    buyer_ctx.set_offline(True)
    expect(buyer.locator(".oc-offline")).to_be_visible()
    screenshot(buyer, "offline-banner")
    sent = [f"While you were away {n}" for n in (1, 2, 3)]
    for text in sent:
        send(seller, text)
    expect(chat(seller).locator(".oc-pending li")).to_have_count(0)
    expect(chat(seller).locator(".oc-events")).to_contain_text(sent[-1])

    buyer_ctx.set_offline(False)
    expect(buyer.locator(".oc-offline")).to_be_hidden()
    expect(chat(buyer).locator(".oc-events")).to_contain_text(sent[-1])
    buyer.wait_for_timeout(500)  # a duplicate would show up by now
    shown = [b for b in bodies(buyer) if b.startswith("While you were away")]
    assert shown == sent
    seqs = [
        int(s) for s in chat(buyer).locator(".oc-events [data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    assert seqs == sorted(set(seqs))

    # The buyer's own message written offline is delivered when the network returns.
    buyer_ctx.set_offline(True)
    expect(buyer.locator(".oc-offline")).to_be_visible()
    send(buyer, "Written on the train")
    expect(chat(buyer).locator(".oc-pending")).to_contain_text("Written on the train")
    buyer_ctx.set_offline(False)
    expect(chat(seller).locator(".oc-events")).to_contain_text("Written on the train")
    expect(chat(buyer).locator(".oc-pending li")).to_have_count(0)
    assert bodies(buyer).count("Written on the train") == 1
    buyer_ctx.close()
    seller_ctx.close()


XSS_PAYLOADS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=2;alert(2)">',
    "<svg onload=alert(3)>",
    '<iframe src="javascript:alert(4)"></iframe>',
    '"><script>alert(5)</script>',
    '<a href="javascript:alert(6)">click</a>',
    "<body onload=alert(7)>",
    "<input autofocus onfocus=alert(8)>",
    "<details open ontoggle=alert(9)>",
    "<video><source onerror=alert(10)></video>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(11)>",
    "{{constructor.constructor('alert(12)')()}}",
    "javascript:alert(13)",
    "<style>body{display:none}</style>",
    "<marquee onstart=alert(15)>x</marquee>",
    '<object data="javascript:alert(16)"></object>',
    '<embed src="javascript:alert(17)">',
    "<form><button formaction=javascript:alert(18)>x</button></form>",
    "';alert(19);//",
    '<div id="xss-injected" style="position:fixed;inset:0">owned</div>',
]


INJECTABLE = (
    "script, img, svg, iframe, a, input, details, video, math, style, marquee, object, embed, form, #xss-injected"
)


def test_twenty_xss_payloads_render_as_inert_text(browser, site: Site) -> None:
    buyer_ctx, buyer = buyer_orders(browser, site)
    seller_ctx, seller = seller_console(browser, site, "seller-tessa", "A10002")
    dialogs: list[str] = []
    for page in (buyer, seller):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_chat(buyer, "A10002")
    for payload in XSS_PAYLOADS:
        send(buyer, payload)
    expect(chat(buyer).locator(".oc-pending li")).to_have_count(0)
    for page in (buyer, seller):
        expect(chat(page).locator(".oc-events .oc-msg")).to_have_count(len(XSS_PAYLOADS) + 1)
        assert bodies(page)[-len(XSS_PAYLOADS) :] == XSS_PAYLOADS
        injected = chat(page).locator(".oc-events").locator(INJECTABLE)
        assert injected.count() == 0
        assert page.evaluate("window.__xss") is None
        assert page.locator("#xss-injected").count() == 0
        expect(page.locator("body")).to_be_visible()
    buyer.wait_for_timeout(300)
    assert dialogs == []
    screenshot(seller, "xss-as-text")

    # Opened again, the chat shows the newest events; "Load earlier" brings the rest, once.
    seller.reload()
    expect(chat(seller).locator(".oc-events .oc-msg")).to_have_count(10)
    chat(seller).get_by_role("button", name="Load earlier messages").click()
    expect(chat(seller).locator(".oc-events .oc-msg")).to_have_count(len(XSS_PAYLOADS) + 1)
    expect(chat(seller).get_by_role("button", name="Load earlier messages")).to_be_hidden()
    assert bodies(seller)[-len(XSS_PAYLOADS) :] == XSS_PAYLOADS
    assert page.evaluate("window.__xss") is None
    buyer_ctx.close()
    seller_ctx.close()


def test_tabs_search_and_paging_on_manage_orders(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site)
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_text(
        [
            "All (20)",
            "Awaiting Payment (3)",
            "Awaiting Shipment (4)",
            "Goods Awaiting Acceptance (4)",
            "Disputes (0)",
            re.compile(r"Unread Order Messages \(\d+\)"),
        ]
    )
    orders = page.locator(".om-order")
    # Paging: 10 per page, newest first.
    expect(orders).to_have_count(10)
    newest_first = [o.order_id for o in sorted(demo_data.ORDERS, key=lambda o: o.ordered_days_ago)]
    assert orders.evaluate_all("els => els.map(e => e.dataset.orderId)") == newest_first[:10]
    page.get_by_role("button", name="Older orders").click()
    expect(orders.first).to_have_attribute("data-order-id", newest_first[10])
    assert orders.evaluate_all("els => els.map(e => e.dataset.orderId)") == newest_first[10:]
    expect(page.get_by_role("button", name="Older orders")).to_be_disabled()
    page.get_by_role("button", name="Newer orders").click()
    expect(orders.first).to_have_attribute("data-order-id", "A10001")
    expect(page.get_by_role("button", name="Newer orders")).to_be_disabled()

    # Tabs.
    page.get_by_role("tab", name=re.compile("Awaiting Shipment")).click()
    expect(orders).to_have_count(4)
    assert set(orders.evaluate_all("els => els.map(e => e.dataset.status)")) == {"awaiting_shipment"}
    page.get_by_role("tab", name=re.compile("Unread Order Messages")).click()
    unread_label = page.get_by_role("tab", name=re.compile("Unread")).inner_text()
    unread_count = int(re.search(r"\((\d+)\)", unread_label).group(1))
    assert unread_count > 0
    expect(orders).to_have_count(unread_count)
    expect(page.locator(".om-unread")).to_have_count(unread_count)
    screenshot(page, "orders-unread-tab")
    page.get_by_role("tab", name=re.compile("All")).click()
    expect(orders).to_have_count(10)

    # Search: item name, order id, status, supplier, tracking, date range.
    def search(**fields: str) -> list[str]:
        page.get_by_role("button", name="Reset").click()
        expect(orders).to_have_count(10)
        for label, value in fields.items():
            control = page.get_by_label(label.replace("_", " "), exact=True)
            if label == "Status":
                control.select_option(value)
            else:
                control.fill(value)
        page.get_by_role("button", name="Search").click()
        page.wait_for_function("() => !document.querySelector('.om-list[aria-busy]')")
        page.wait_for_timeout(200)
        return orders.evaluate_all("els => els.map(e => e.dataset.orderId)")

    assert search(Item_name="hammock") == ["A10003"]
    assert search(Order_ID="A10015") == ["A10015"]
    assert search(Supplier="vega") == ["A10004", "A10009", "A10014", "A10019"]
    assert search(Tracking_number="LP00412990137784") == ["A10009"]
    assert search(Status="cancelled") == ["A10017", "A10018", "A10019"]
    from chat_service.commerce.models import Order

    ordered = orm(
        lambda: list(Order.objects.filter(buyer_id=BUYER).order_by("-ordered_at").values_list("pk", "ordered_at"))
    )
    day_from = (ordered[0][1] - timedelta(days=30)).date()
    day_to = (ordered[0][1] - timedelta(days=20)).date()
    expected = [pk for pk, at in ordered if day_from <= at.date() <= day_to]
    assert expected
    assert search(Ordered_from=day_from.isoformat(), Ordered_to=day_to.isoformat()) == expected
    screenshot(page, "orders-search")

    # View Detail: tracking number and timeline.
    search(Order_ID="A10009")
    row(page, "A10009").get_by_role("button", name="View Detail").click()
    detail = page.locator(".om-panel")
    expect(detail).to_contain_text("LP00412990137784")
    expect(detail).to_contain_text("Timeline")
    screenshot(page, "order-detail")
    context.close()


def test_pages_are_usable_at_360_px(browser, site: Site) -> None:
    context, page = buyer_orders(browser, site, width=360, height=740)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "orders-360")
    open_chat(page, "A10001")
    send(page, "Hello from a phone")
    expect(chat(page).locator(".oc-events")).to_contain_text("Hello from a phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "chat-360")
    page.get_by_role("button", name="Close").click()

    # Keyboard only: open a chat, write and send with Enter, close with Escape.
    row(page, "A10002").get_by_role("button", name="Contact Seller").focus()
    page.keyboard.press("Enter")
    expect(chat(page).locator(".oc-title")).to_contain_text("A10002")
    expect(page.get_by_role("button", name="Close")).to_be_focused()
    chat(page).get_by_label("Message").focus()
    page.keyboard.type("Typed with the keyboard")
    page.keyboard.press("Enter")
    expect(chat(page).locator(".oc-events")).to_contain_text("Typed with the keyboard")
    page.keyboard.press("Escape")
    expect(page.locator(".om-panel")).to_be_hidden()
    context.close()


def test_static_modules_are_served_by_daphne_with_javascript_type(site: Site) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{site.url}/static/chat/embed.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert "max-age" in response.headers["Cache-Control"]
        assert response.headers["Last-Modified"]


def test_the_embed_example_chats_with_a_marketplace_token(browser, site: Site) -> None:
    seller_ctx, seller = seller_console(browser, site, "seller-lumen", "A10001")
    context, orders_page = sign_in(browser, site, BUYER)
    orders_page.close()
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{site.url}/embed/")
    expect(page.locator("seller-status").first).to_contain_text("Online")
    expect(chat(page).locator(".oc-events")).to_contain_text("Would you take $22")
    send(page, "Sent from the embedded widget")
    expect(chat(seller).locator(".oc-events")).to_contain_text("Sent from the embedded widget")
    assert len(sockets) == 1 and "token=" in sockets[0]  # one socket for the indicator and the chat
    screenshot(page, "embed-example")
    context.close()
    seller_ctx.close()
