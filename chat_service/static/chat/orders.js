// The buyer's Manage Orders page: tabs with counts, search, newer/older pages, one card per
// order with its seller indicator, unread link, actions, and the chat and detail panels.
// Live: unread.updated, notification, thread.event, presence.changed frames and the open
// chat's chat-unread events refresh the badges, statuses and amounts of the orders on
// screen without a reload.

import { connection as conn } from "./embed.js";
import { h, clear, money, formatDateTime, STATUS_LABELS, DISPUTE_REASONS, disputeSentence } from "./ui.js";

const PAGE_SIZE = 10;
const TABS = [
  ["", "All", (c) => c.all],
  ["awaiting_payment", "Awaiting Payment", (c) => c.statuses.awaiting_payment],
  ["awaiting_shipment", "Awaiting Shipment", (c) => c.statuses.awaiting_shipment],
  ["awaiting_acceptance", "Goods Awaiting Acceptance", (c) => c.statuses.awaiting_acceptance],
  ["disputes", "Disputes", (c) => c.disputes],
  ["unread", "Unread Order Messages", (c) => c.unread],
];
const PAY_URL = document.body.dataset.payUrl || "";
// The search form's fields; they, the tab and the page live in the URL (reload and back keep them).
const FILTERS = ["q", "order_id", "status", "supplier", "tracking", "date_from", "date_to"];

const root = document.getElementById("orders-app");
const state = { tab: "", filters: {}, cursor: null, page: null, orders: new Map() };

const tabsEl = h("div", { class: "om-tabs", role: "tablist", "aria-label": "Orders by status" });
const listEl = h("ol", { class: "om-list", "aria-label": "Orders" });
const pagerEl = h("nav", { class: "om-pager", "aria-label": "Pages" });
const liveEl = h("div", { class: "oc-sr", role: "status", "aria-live": "polite" });
const panel = h("aside", { class: "om-panel", hidden: true, "aria-label": "Order panel" });
// Behind the panel: the page is dimmed (the panel covers part of the card it belongs to),
// and a click on it closes the panel.
const backdrop = h("div", { class: "om-backdrop", hidden: true, onclick: () => closePanel() });
const tabPanel = h("div", { id: "om-tabpanel", role: "tabpanel" });
let opener = null; // the control that opened the panel: focus goes back to it

function searchForm() {
  const field = (name, label, attrs = {}) => h("div", { class: "om-field" },
    h("label", { for: `f-${name}` }, label), h("input", { id: `f-${name}`, name, ...attrs }));
  const status = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "Any status"),
    ...Object.entries(STATUS_LABELS).map(([v, l]) => h("option", { value: v }, l)));
  const form = h("form", { class: "om-search", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(form);
    state.filters = {};
    for (const [k, v] of data.entries()) if (String(v).trim()) state.filters[k] = String(v).trim();
    state.cursor = null;
    navigate();
  } },
  field("q", "Item name", { type: "search" }),
  field("order_id", "Order ID"),
  h("div", { class: "om-field" }, h("label", { for: "f-status" }, "Status"), status),
  field("supplier", "Supplier"),
  field("tracking", "Tracking number"),
  field("date_from", "Ordered from", { type: "date" }),
  field("date_to", "Ordered to", { type: "date" }),
  h("div", { class: "om-field om-buttons" },
    h("button", { type: "submit", class: "oc-primary" }, "Search"),
    h("button", { type: "reset", onclick: () => setTimeout(() => form.requestSubmit(), 0) }, "Reset")));
  return form;
}

const formEl = searchForm();
tabPanel.append(listEl, pagerEl);
root.append(tabsEl, formEl, liveEl, tabPanel);
document.body.append(backdrop, panel);
// Escape closes the panel from anywhere on the page.
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !panel.hidden) closePanel(); });
tabsEl.addEventListener("scroll", () => tabsScrollHint());
window.addEventListener("resize", () => tabsScrollHint());

/** Tabs that run off screen (narrow viewports) show a fade on the side that scrolls. */
function tabsScrollHint() {
  const more = tabsEl.scrollWidth - tabsEl.clientWidth - tabsEl.scrollLeft > 2;
  tabsEl.classList.toggle("om-tabs-more", more);
}

// --- the URL -----------------------------------------------------------------------------

function fromUrl() {
  const params = new URLSearchParams(location.search);
  state.tab = params.get("tab") || "";
  state.cursor = params.get("cursor") || null;
  state.filters = {};
  for (const name of FILTERS) {
    const value = (params.get(name) || "").trim();
    if (value) state.filters[name] = value;
  }
  for (const name of FILTERS) formEl.elements[name].value = state.filters[name] || "";
}

function urlOf() {
  const params = new URLSearchParams();
  if (state.tab) params.set("tab", state.tab);
  for (const name of FILTERS) if (state.filters[name]) params.set(name, state.filters[name]);
  if (state.cursor) params.set("cursor", state.cursor);
  const search = params.toString();
  return `${location.pathname}${search ? `?${search}` : ""}`;
}

/** A search, a tab or a page the user chose: a new history entry, then the list. */
function navigate() {
  const url = urlOf();
  if (url !== `${location.pathname}${location.search}`) history.pushState(null, "", url);
  load();
}

window.addEventListener("popstate", () => { fromUrl(); load(); });

// --- data ---------------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams({ ...state.filters, role: "buyer", limit: String(PAGE_SIZE) });
  if (state.tab) params.set("status", state.tab);
  if (state.cursor) params.set("cursor", state.cursor);
  return `/api/orders/?${params}`;
}

async function load() {
  listEl.setAttribute("aria-busy", "true");
  formEl.hidden = state.tab === "disputes"; // the order search does not apply to disputes
  try {
    if (state.tab === "disputes") {
      // Every dispute of the buyer's, with its outcome: the open ones on top, then the
      // history, newest first (paged by the history's cursor).
      const history = new URLSearchParams({ role: "buyer", status: "closed", limit: String(PAGE_SIZE) });
      if (state.cursor) history.set("cursor", state.cursor);
      const [open, closed] = await Promise.all([
        state.cursor ? Promise.resolve({ disputes: [] }) : conn.fetchJson("/api/disputes/?role=buyer&status=open&limit=50"),
        conn.fetchJson(`/api/disputes/?${history}`), loadCounts()]);
      state.page = closed;
      renderDisputes(open.disputes, closed.disputes);
      return;
    }
    const [page] = await Promise.all([conn.fetchJson(query()), loadCounts()]);
    state.page = page;
    renderList();
  } catch (err) {
    clear(listEl).append(h("li", { class: "om-empty" }, err.message || "Could not load your orders."));
  } finally {
    listEl.removeAttribute("aria-busy");
  }
}

async function loadCounts() {
  try {
    renderTabs(await conn.fetchJson("/api/orders/counts/?role=buyer"));
  } catch (_) { /* tabs keep their last counts */ }
}

const refreshing = new Map();
function refreshOrder(orderId) {
  // Several frames for one change come together: one fetch for them.
  if (!state.orders.has(orderId) || refreshing.has(orderId)) return;
  refreshing.set(orderId, setTimeout(async () => {
    refreshing.delete(orderId);
    try {
      const detail = await conn.fetchJson(`/api/orders/${encodeURIComponent(orderId)}/`);
      const old = state.orders.get(orderId);
      if (!old) return;
      // The detail in the list item's shape: the live offer, the open dispute, else the last one.
      const open = Boolean(detail.allowed_actions.dispute.dispute_id);
      const item = { ...old, ...detail, actions: {
        order: detail.allowed_actions.order,
        offer: detail.allowed_actions.offer.actions,
        dispute: detail.allowed_actions.dispute.actions,
      },
      offer: (detail.offers || []).find((o) => o.offer_id === detail.allowed_actions.offer.offer_id) || null,
      dispute: open ? detail.dispute : null,
      last_dispute: open ? null : detail.dispute };
      state.orders.set(orderId, item);
      const el = listEl.querySelector(`[data-order-id="${CSS.escape(orderId)}"]`);
      if (el) el.replaceWith(orderCard(item));
      if (panel.dataset.kind === "detail" && panel.dataset.orderId === orderId) showDetail(orderId);
    } catch (_) { /* the next frame retries */ }
  }, 150));
}

let countsTimer = null;
function refreshCounts() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(loadCounts, 200);
}

// --- rendering ----------------------------------------------------------------------------

function renderTabs(counts) {
  const focused = tabsEl.contains(document.activeElement) ? document.activeElement.dataset.tab : null;
  clear(tabsEl);
  for (const [value, label, count] of TABS) {
    const selected = state.tab === value;
    const id = `om-tab-${value || "all"}`;
    tabsEl.append(h("button", {
      type: "button", role: "tab", id, class: "om-tab", "aria-selected": selected ? "true" : "false",
      "aria-controls": "om-tabpanel", tabindex: selected ? "0" : "-1",
      dataset: { tab: value || "all" },
      onclick: () => selectTab(value),
    }, label, " ", h("span", { class: "om-count" }, `(${count(counts) ?? 0})`)));
    if (selected) tabPanel.setAttribute("aria-labelledby", id);
  }
  if (focused) tabsEl.querySelector(`[data-tab="${focused}"]`)?.focus();
  tabsScrollHint();
}

function selectTab(value) {
  state.tab = value;
  state.cursor = null;
  navigate();
}

// Arrow keys move between the tabs (and show the one they land on), Home and End to the ends.
tabsEl.addEventListener("keydown", (e) => {
  const values = TABS.map(([value]) => value);
  const at = values.indexOf(state.tab);
  const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: values.length - 1 }[e.key];
  if (to === undefined) return;
  e.preventDefault();
  const value = values[(to + values.length) % values.length];
  selectTab(value);
  renderTabsFocus(value);
});

function renderTabsFocus(value) {
  for (const tab of tabsEl.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.tab === (value || "all");
    tab.setAttribute("aria-selected", selected ? "true" : "false");
    tab.tabIndex = selected ? 0 : -1;
    if (selected) { tab.focus(); tabPanel.setAttribute("aria-labelledby", tab.id); }
  }
}

function renderList() {
  clear(listEl);
  state.orders.clear();
  const items = state.page.orders || [];
  for (const item of items) state.orders.set(item.order_id, item);
  if (!items.length) listEl.append(h("li", { class: "om-empty" }, "No orders match."));
  for (const item of items) listEl.append(orderCard(item));
  clear(pagerEl);
  const newer = h("button", { type: "button", disabled: !state.page.prev, onclick: () => { state.cursor = state.page.prev; navigate(); } }, "← Newer orders");
  const older = h("button", { type: "button", disabled: !state.page.next, onclick: () => { state.cursor = state.page.next; navigate(); } }, "Older orders →");
  pagerEl.append(newer, older);
  liveEl.textContent = `${items.length} orders shown.`;
}

function renderDisputes(open, closed) {
  clear(listEl);
  state.orders.clear();
  if (!open.length && !closed.length) listEl.append(h("li", { class: "om-empty" }, "No disputes."));
  if (open.length) listEl.append(h("li", { class: "om-section" }, h("h2", {}, "Open disputes")));
  for (const d of open) listEl.append(disputeCard(d));
  if (closed.length) listEl.append(h("li", { class: "om-section" }, h("h2", {}, "Past disputes")));
  for (const d of closed) listEl.append(disputeCard(d));
  clear(pagerEl);
  pagerEl.append(
    h("button", { type: "button", disabled: !state.page.prev, onclick: () => { state.cursor = state.page.prev; navigate(); } }, "← Newer disputes"),
    h("button", { type: "button", disabled: !state.page.next, onclick: () => { state.cursor = state.page.next; navigate(); } }, "Older disputes →"));
  liveEl.textContent = `${open.length} open and ${closed.length} past disputes shown.`;
}

function disputeCard(d) {
  const o = d.order;
  return h("li", { class: "om-order om-dispute-item", dataset: { disputeId: d.dispute_id, orderId: o.order_id, disputeStatus: d.status } },
    h("div", { class: "om-order-head" },
      h("span", {}, "Order: ", h("strong", { class: "om-order-id" }, o.order_id)),
      h("span", {}, "Opened: ", h("time", { datetime: d.opened_at }, formatDateTime(d.opened_at))),
      d.closed_at ? h("span", {}, "Closed: ", h("time", { datetime: d.closed_at }, formatDateTime(d.closed_at))) : null),
    h("div", { class: "om-order-body" },
      h("div", { class: "om-item" },
        h("div", { class: "om-title" }, o.item_title),
        h("div", { class: "om-props" }, `${o.supplier_name} · Reason: ${DISPUTE_REASONS[d.reason] || d.reason}`)),
      h("div", { class: "om-amount", "aria-label": "Amount" }, money(o.amount, o.currency)),
      h("p", { class: "om-status om-dispute" }, disputeSentence(d, d.role)),
      h("div", { class: "om-actions" },
        h("button", { type: "button", "aria-label": `Contact seller about order ${o.order_id}`, onclick: () => showChat(o.order_id) }, "Contact Seller"),
        h("button", { type: "button", "aria-label": `View order ${o.order_id}`, onclick: () => showDetail(o.order_id) }, "View Order"))));
}

function properties(props) {
  return Object.entries(props || {}).map(([k, v]) => `${k}: ${v}`).join(" · ");
}

function orderCard(item) {
  const actions = new Set((item.actions && item.actions.order) || []);
  const open = (kind, extra = {}) => () => (kind === "chat" ? showChat(item.order_id, extra) : showDetail(item.order_id));
  const unread = item.unread || 0;
  const buttons = h("div", { class: "om-actions" });
  const id = item.order_id;
  if (item.status === "awaiting_payment") {
    buttons.append(h("a", { class: "om-button oc-primary", "aria-label": `Pay now for order ${id}`, href: PAY_URL ? `${PAY_URL}${encodeURIComponent(id)}` : "#pay", onclick: PAY_URL ? null : (e) => { e.preventDefault(); alertBox(id, "Payment happens on the marketplace. This demo has no payment page."); } }, "Pay Now"));
  }
  // Every button names its order: a screen reader's list of buttons is otherwise a column
  // of "Contact Seller".
  if (actions.has("cancel")) buttons.append(h("button", { type: "button", "aria-label": `Cancel order ${id}`, onclick: () => cancelOrder(item) }, "Cancel Order"));
  if (actions.has("confirm_receipt")) buttons.append(h("button", { type: "button", class: "oc-primary", "aria-label": `Confirm goods received for order ${id}`, onclick: () => showConfirm(item, true) }, "Confirm Goods Received"));
  if (actions.has("leave_feedback")) buttons.append(h("button", { type: "button", "aria-label": `Leave feedback for order ${id}`, onclick: () => showConfirm(item, false) }, "Leave Feedback"));
  if (actions.has("open_dispute")) buttons.append(h("button", { type: "button", "aria-label": `Open dispute about order ${id}`, onclick: open("chat", { dispute: true }) }, "Open Dispute"));
  buttons.append(
    h("button", { type: "button", "aria-label": `Contact seller about order ${id}`, onclick: open("chat") }, "Contact Seller"),
    h("button", { type: "button", "aria-label": `View detail of order ${id}`, onclick: open("detail") }, "View Detail"));
  const status = h("div", { class: "om-status" }, STATUS_LABELS[item.status] || item.status);
  // The after-sale, in words: the open dispute, else how the last one ended (not a withdrawn one).
  const dispute = item.dispute || (item.last_dispute && item.last_dispute.status === "resolved" ? item.last_dispute : null);
  if (dispute) status.append(h("p", { class: "om-flag om-dispute", dataset: { disputeStatus: dispute.status } }, disputeSentence(dispute, item.role)));
  if (item.offer && item.offer.status === "open") status.append(offerBox(item));
  return h("li", { class: "om-order", dataset: { orderId: item.order_id, status: item.status } },
    h("div", { class: "om-order-head" },
      h("span", {}, "Order: ", h("strong", { class: "om-order-id" }, item.order_id)),
      h("span", {}, "Order time: ", h("time", { datetime: item.ordered_at }, formatDateTime(item.ordered_at))),
      h("span", { class: "om-supplier" }, item.supplier_name, " ",
        h("seller-status", { "seller-id": item.seller_id, "order-id": item.order_id, "seller-name": item.supplier_name })),
      unread ? h("a", { href: "#", class: "om-unread", onclick: (e) => { e.preventDefault(); showChat(item.order_id); } },
        `${unread} new message${unread === 1 ? "" : "s"}`) : null),
    h("div", { class: "om-order-body" },
      h("div", { class: "om-item" },
        h("div", { class: "om-title" }, item.item_title),
        h("div", { class: "om-props" }, properties(item.properties)),
        h("div", { class: "om-qty" }, `Quantity: ${item.quantity}`)),
      h("div", { class: "om-amount", "aria-label": "Amount" }, money(item.amount, item.currency)),
      status,
      buttons));
}

/** The seller's open offer on the card: what the buyer came back for. */
function offerBox(item) {
  const { offer } = item;
  const can = new Set((item.actions && item.actions.offer) || []);
  const note = h("p", { class: "om-offer-status", role: "status" });
  const act = async (type, done) => {
    note.textContent = "Working…";
    try {
      await conn.request(type, { offer_id: offer.offer_id });
      note.textContent = done;
      refreshOrder(item.order_id);
      refreshCounts();
    } catch (err) {
      note.textContent = err.message || "That did not work.";
      refreshOrder(item.order_id);
    }
  };
  return h("div", { class: "om-offer", role: "group", "aria-label": `Offer on order ${item.order_id}` },
    h("p", {}, "The seller offers a new price: ", h("strong", { class: "om-offer-price" }, money(offer.price, offer.currency)),
      offer.expires_at ? h("span", { class: "om-offer-expiry" }, ` · until ${formatDateTime(offer.expires_at)}`) : null),
    can.has("accept") ? h("button", { type: "button", class: "oc-primary", onclick: () => act("offer.accept", "Offer accepted.") }, "Accept offer") : null,
    can.has("decline") ? h("button", { type: "button", onclick: () => act("offer.decline", "Offer declined.") }, "Decline offer") : null,
    note);
}

// --- panels -------------------------------------------------------------------------------

function openPanel(kind, orderId, title) {
  if (panel.hidden) opener = document.activeElement;
  clear(panel);
  panel.dataset.kind = kind;
  panel.dataset.orderId = orderId;
  panel.hidden = false;
  backdrop.hidden = false;
  const close = h("button", { type: "button", class: "om-close", onclick: closePanel }, "Close");
  panel.append(h("div", { class: "om-panel-head" }, h("strong", {}, title), close));
  return close;
}

function closePanel() {
  const orderId = panel.dataset.orderId;
  clear(panel);
  panel.hidden = true;
  backdrop.hidden = true;
  delete panel.dataset.orderId;
  // Focus returns to the control that opened the panel, or, if the card was redrawn
  // meanwhile, to the same control of the new card.
  let target = opener && opener.isConnected ? opener : null;
  if (!target && opener && orderId) {
    const label = opener.getAttribute("aria-label");
    const card = listEl.querySelector(`[data-order-id="${CSS.escape(orderId)}"]`);
    target = card && label ? [...card.querySelectorAll("button, a")].find((b) => b.getAttribute("aria-label") === label) : null;
  }
  opener = null;
  if (target) target.focus();
}

function showChat(orderId, { dispute = false } = {}) {
  const close = openPanel("chat", orderId, "Chat with the seller");
  panel.append(h("order-chat", { "order-id": orderId, "open-dispute": dispute }));
  close.focus();
}

async function showDetail(orderId) {
  const wasOpen = panel.dataset.kind === "detail" && panel.dataset.orderId === orderId && !panel.hidden;
  let detail;
  try {
    detail = await conn.fetchJson(`/api/orders/${encodeURIComponent(orderId)}/`);
  } catch (err) {
    alertBox(orderId, err.message || "Could not load the order.");
    return;
  }
  const close = openPanel("detail", orderId, `Order ${orderId}`);
  const rows = [
    ["Item", detail.item_title], ["Supplier", detail.supplier_name], ["Properties", properties(detail.properties)],
    ["Quantity", detail.quantity], ["Amount", money(detail.amount, detail.currency)],
    ["Status", STATUS_LABELS[detail.status] || detail.status], ["Ordered", formatDateTime(detail.ordered_at)],
    ["Tracking number", detail.tracking_number || "Not shipped yet"],
  ];
  if (detail.feedback) rows.push(["Your feedback", `${detail.feedback.rating}/5 ${detail.feedback.comment || ""}`]);
  if (detail.dispute) rows.push(["Dispute", `${disputeSentence(detail.dispute, detail.role)} Reason: ${DISPUTE_REASONS[detail.dispute.reason] || detail.dispute.reason}.`]);
  panel.append(
    h("dl", { class: "om-detail" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    h("h3", {}, "Timeline"),
    h("ol", { class: "om-timeline" }, ...timeline(detail)
      .map((t) => h("li", {}, h("time", { datetime: t.created_at }, formatDateTime(t.created_at)), " ", t.body))));
  if (!wasOpen) close.focus();
}

/** The order's own dates around the thread's order, offer and dispute events: each once,
 * in the viewer's person ("You confirmed that the goods arrived."). */
function timeline(detail) {
  const changes = new Set(detail.timeline.map((e) => e.change));
  const entries = [{ created_at: detail.ordered_at, body: "Order placed." },
    ...detail.timeline.map((e) => ({ ...e, body: inPerson(e.body, e.author_role, detail.role) }))];
  // The order's own record, for what the thread has no event of (a completion the order
  // system reported, say).
  if (detail.receipt_confirmed_at && !changes.has("receipt_confirmed")) entries.push({ created_at: detail.receipt_confirmed_at, body: detail.role === "buyer" ? "You confirmed receipt." : "The buyer confirmed receipt." });
  if (detail.feedback && !changes.has("feedback_left")) entries.push({ created_at: detail.feedback.left_at, body: `Feedback left: ${detail.feedback.rating}/5.` });
  return entries.filter((e) => e.created_at).sort((a, b) => a.created_at.localeCompare(b.created_at));
}

/** "The buyer confirmed …" reads "You confirmed …" to the buyer (the bodies are in the past tense). */
function inPerson(body, authorRole, viewerRole) {
  if (!body || authorRole !== viewerRole) return body;
  return body.replace(new RegExp(`^The ${viewerRole} `), "You ");
}

function alertBox(orderId, text) {
  const close = openPanel("notice", orderId, `Order ${orderId}`);
  panel.append(h("p", { role: "alert" }, text));
  close.focus();
}

async function cancelOrder(item) {
  if (!window.confirm(`Cancel order ${item.order_id}?`)) return;
  try {
    await conn.request("order.cancel", { order_id: item.order_id });
    refreshOrder(item.order_id);
    refreshCounts();
  } catch (err) {
    alertBox(item.order_id, err.message || "Could not cancel the order.");
  }
}

function showConfirm(item, receipt) {
  const close = openPanel("confirm", item.order_id, receipt ? "Confirm goods received" : "Leave feedback");
  const rating = h("select", { id: "fb-rating" }, ...[5, 4, 3, 2, 1].map((n) => h("option", { value: String(n) }, `${n} star${n > 1 ? "s" : ""}`)));
  const comment = h("textarea", { id: "fb-comment", rows: "3", maxlength: "1000" });
  const withFeedback = h("input", { id: "fb-now", type: "checkbox", checked: !receipt });
  const status = h("p", { role: "status", class: "om-form-status" });
  const feedbackPart = h("fieldset", { class: "om-feedback" },
    h("legend", {}, "Feedback"),
    // Wherever feedback can be left: for electronics, try them first (the order system's
    // category, or the title when it sends none: try_before_feedback).
    item.try_before_feedback ? h("p", { class: "om-advice" }, "Tip: use electronics for a few days before you leave feedback, so you know they work as described.") : null,
    h("p", { class: "om-warning" }, "Leaving feedback ends the chance to open a dispute for this order."),
    h("label", { for: "fb-rating" }, "Rating"), rating,
    h("label", { for: "fb-comment" }, "Comment (optional)"), comment);
  const form = h("form", { class: "om-confirm", onsubmit: async (e) => {
    e.preventDefault();
    status.textContent = "Working…";
    try {
      if (receipt) await conn.request("order.confirm_receipt", { order_id: item.order_id });
      if (!receipt || withFeedback.checked) {
        await conn.request("order.leave_feedback", { order_id: item.order_id, rating: Number(rating.value), ...(comment.value.trim() ? { comment: comment.value.trim() } : {}) });
      }
      status.textContent = "Done.";
      refreshOrder(item.order_id);
      refreshCounts();
      closePanel();
    } catch (err) {
      status.textContent = err.message || "That did not work.";
      refreshOrder(item.order_id);
    }
  } },
  receipt ? h("p", {}, "Confirm only once you have received the goods: the seller is then paid.") : null,
  receipt ? h("div", { class: "oc-check" }, withFeedback, h("label", { for: "fb-now" }, "Leave feedback now")) : null,
  feedbackPart,
  status,
  h("button", { type: "submit", class: "oc-primary" }, receipt ? "Confirm Goods Received" : "Leave Feedback"));
  panel.append(form);
  const sync = () => { feedbackPart.hidden = receipt && !withFeedback.checked; };
  withFeedback.addEventListener("change", sync);
  sync();
  close.focus();
}

// --- live ---------------------------------------------------------------------------------

document.addEventListener("open-chat", (e) => showChat(e.detail.orderId));
conn.addEventListener("unread.updated", (e) => { refreshOrder(e.detail.order_id); refreshCounts(); });
// An open chat derives its counts from its events (protocol 2) and says when they change.
document.addEventListener("chat-unread", (e) => { refreshOrder(e.detail.orderId); refreshCounts(); });
conn.addEventListener("notification", (e) => { refreshOrder(e.detail.order_id); refreshCounts(); });
conn.addEventListener("thread.event", (e) => {
  if (e.detail.event.kind !== "message") { refreshOrder(e.detail.orderId); refreshCounts(); }
  if (e.detail.event.kind === "dispute" && state.tab === "disputes") load();
});
// After a reconnect, what changed while offline is fetched again.
let hellos = conn.state === "open" ? 1 : 0;
conn.addEventListener("hello", () => { if (hellos++ > 0) load(); });

fromUrl();
load();
