// <seller-status seller-id="..."> — the seller's online indicator: an orange or grey dot plus
// the words "Online"/"Offline" (never colour alone) and the typical reply time (online or
// not: beside a grey dot it says when an answer can be expected). While the
// seller is online the indicator is a button that opens the chat of the element's order-id
// (it dispatches "open-chat", which pages handle), if it has one.

import { getConnection } from "./connection.js";
import { h, clear, replyTimeText, formatDateTime } from "./ui.js";

const queued = new Set();
let flushScheduled = false;

function subscribeSoon(sellerId) {
  // Indicators on one page are subscribed in one frame (one round trip for a page of orders).
  queued.add(sellerId);
  if (flushScheduled) return;
  flushScheduled = true;
  queueMicrotask(() => {
    flushScheduled = false;
    const ids = [...queued];
    queued.clear();
    getConnection().subscribePresence(ids);
  });
}

export class SellerStatus extends HTMLElement {
  connectedCallback() {
    this.conn = getConnection();
    this.onPresence = (e) => { if (e.detail.sellerId === this.sellerId) this.render(); };
    this.conn.addEventListener("presence", this.onPresence);
    this.conn.addEventListener("hello", this.onPresence);
    this.render();
    subscribeSoon(this.sellerId);
  }

  disconnectedCallback() {
    this.conn.removeEventListener("presence", this.onPresence);
  }

  get sellerId() { return this.getAttribute("seller-id"); }

  render() {
    const state = this.conn.presence.get(this.sellerId);
    const online = state && state.status === "online";
    const reply = state ? replyTimeText(state.typical_reply_s) : "";
    this.dataset.status = state ? state.status : "unknown";
    const dot = h("span", { class: `oc-dot ${online ? "oc-dot-on" : "oc-dot-off"}`, "aria-hidden": "true" });
    const words = h("span", { class: "oc-status-text" }, online ? "Online" : "Offline");
    const extra = [];
    // Offline, the reply time matters most: when will an answer come?
    if (reply) extra.push(h("span", { class: "oc-status-extra oc-status-reply" }, `· ${reply}`));
    if (!online && state && state.last_seen) extra.push(h("span", { class: "oc-status-extra" }, `· last seen ${formatDateTime(state.last_seen)}`));
    clear(this);
    const orderId = this.getAttribute("order-id");
    if (online && orderId) {
      const label = this.getAttribute("seller-name") ? `${this.getAttribute("seller-name")} is online: open the chat` : "Seller online: open the chat";
      this.append(h("button", {
        type: "button", class: "oc-status oc-status-button", "aria-label": label,
        onclick: () => this.dispatchEvent(new CustomEvent("open-chat", { bubbles: true, detail: { orderId } })),
      }, dot, words), ...extra);
    } else {
      this.append(h("span", { class: "oc-status" }, dot, words), ...extra);
    }
  }
}

if (!customElements.get("seller-status")) customElements.define("seller-status", SellerStatus);
