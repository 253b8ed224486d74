// The seller console: the inbox of the user's threads (unread counts, last message) and the
// chat of the selected one. The page holds the shared socket, so while it is open the seller
// is online (orange on the buyers' pages).

import { connection as conn } from "./embed.js";
import { h, clear, formatDateTime, money, STATUS_LABELS } from "./ui.js";

const inbox = document.getElementById("console-inbox");
const main = document.getElementById("console-chat");
const filterUnread = document.getElementById("console-unread-only");
let selected = new URLSearchParams(location.search).get("order") || null;

async function loadInbox() {
  try {
    const data = await conn.fetchJson(`/api/threads/?limit=100${filterUnread && filterUnread.checked ? "&unread=1" : ""}`);
    renderInbox(data.threads || []);
  } catch (err) {
    clear(inbox).append(h("li", { class: "om-empty" }, err.message || "Could not load the inbox."));
  }
}

const threads = new Map(); // order_id -> the thread as the inbox shows it

function renderInbox(list) {
  // Rebuilt only on load (first, reconnect, filter): focus stays on the thread it was on.
  const focused = inbox.contains(document.activeElement) ? document.activeElement.closest(".cs-thread")?.dataset.orderId : null;
  threads.clear();
  clear(inbox);
  if (!list.length) inbox.append(h("li", { class: "om-empty" }, "No conversations."));
  for (const t of list) {
    threads.set(t.order.order_id, t);
    inbox.append(h("li", { class: `cs-thread${t.order.order_id === selected ? " cs-selected" : ""}`, dataset: { orderId: t.order.order_id } },
      h("button", { type: "button", class: "cs-open", "aria-current": t.order.order_id === selected ? "true" : null, onclick: () => select(t.order.order_id) },
        ...threadLines(t))));
  }
  if (focused) inbox.querySelector(`[data-order-id="${CSS.escape(focused)}"] button`)?.focus();
}

function threadLines(t) {
  const o = t.order;
  const last = t.last_event;
  return [
    h("span", { class: "cs-line" },
      h("strong", {}, `Order ${o.order_id}`),
      t.unread ? h("span", { class: "oc-badge", "aria-label": `${t.unread} unread` }, String(t.unread)) : null),
    h("span", { class: "cs-item" }, o.item_title),
    h("span", { class: "cs-meta" }, `${t.role === "seller" ? `Buyer ${o.buyer_id}` : `You bought from ${o.supplier_name}`} · ${STATUS_LABELS[o.status] || o.status} · ${money(o.amount, o.currency)}`),
    last ? h("span", { class: "cs-last" }, last.body || last.kind, " · ", formatDateTime(last.created_at)) : h("span", { class: "cs-last" }, "No messages yet"),
  ];
}

/** A pushed change to one thread: its entry is updated in place (the button keeps focus)
 * and moves to the top unless the user is on it; only a thread the inbox does not list
 * yet costs a fetch of the list. */
function updateThread(orderId, patch) {
  const t = threads.get(orderId);
  if (!t || (filterUnread && filterUnread.checked)) { refreshSoon(); return; }
  Object.assign(t, patch);
  const li = inbox.querySelector(`[data-order-id="${CSS.escape(orderId)}"]`);
  if (!li) return;
  li.querySelector("button").replaceChildren(...threadLines(t));
  if (patch.last_event && !li.contains(document.activeElement) && inbox.firstElementChild !== li) inbox.prepend(li);
}

function select(orderId) {
  selected = orderId;
  history.replaceState(null, "", `?order=${encodeURIComponent(orderId)}`);
  clear(main).append(h("order-chat", { "order-id": orderId }));
  for (const li of inbox.querySelectorAll(".cs-thread")) {
    const on = li.dataset.orderId === orderId;
    li.classList.toggle("cs-selected", on);
    li.querySelector("button").setAttribute("aria-current", on ? "true" : "false");
  }
}

let timer = null;
function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(loadInbox, 250);
}

conn.addEventListener("unread.updated", (e) => updateThread(e.detail.order_id, { unread: e.detail.unread }));
conn.addEventListener("notification", (e) => updateThread(e.detail.order_id, {
  unread: e.detail.unread,
  last_event: { kind: e.detail.kind, body: e.detail.body, created_at: new Date().toISOString() },
}));
conn.addEventListener("thread.event", (e) => updateThread(e.detail.orderId, { last_event: e.detail.event }));
// The open chat derives its count (protocol 2) and says when it changes.
document.addEventListener("chat-unread", (e) => updateThread(e.detail.orderId, { unread: e.detail.unread }));
conn.addEventListener("hello", refreshSoon); // after a reconnect: what changed meanwhile
if (filterUnread) filterUnread.addEventListener("change", loadInbox);

loadInbox();
if (selected) select(selected);
