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

function renderInbox(threads) {
  clear(inbox);
  if (!threads.length) inbox.append(h("li", { class: "om-empty" }, "No conversations."));
  for (const t of threads) {
    const o = t.order;
    const last = t.last_event;
    inbox.append(h("li", { class: `cs-thread${o.order_id === selected ? " cs-selected" : ""}`, dataset: { orderId: o.order_id } },
      h("button", { type: "button", class: "cs-open", "aria-current": o.order_id === selected ? "true" : null, onclick: () => select(o.order_id) },
        h("span", { class: "cs-line" },
          h("strong", {}, `Order ${o.order_id}`),
          t.unread ? h("span", { class: "oc-badge", "aria-label": `${t.unread} unread` }, String(t.unread)) : null),
        h("span", { class: "cs-item" }, o.item_title),
        h("span", { class: "cs-meta" }, `${t.role === "seller" ? `Buyer ${o.buyer_id}` : `You bought from ${o.supplier_name}`} · ${STATUS_LABELS[o.status] || o.status} · ${money(o.amount, o.currency)}`),
        last ? h("span", { class: "cs-last" }, last.body || last.kind, " · ", formatDateTime(last.created_at)) : h("span", { class: "cs-last" }, "No messages yet"))));
  }
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

conn.addEventListener("unread.updated", refreshSoon);
conn.addEventListener("notification", refreshSoon);
conn.addEventListener("thread.event", refreshSoon);
conn.addEventListener("hello", refreshSoon);
if (filterUnread) filterUnread.addEventListener("change", loadInbox);

loadInbox();
if (selected) select(selected);
