// <order-chat order-id="A10001"> — the order's thread: history with "load earlier", optimistic
// send with automatic resend, typing indicator, "Seen", unread badge, day separators, and the
// order's commerce (offer card, dispute panel) with only the actions allowed now. The server
// re-checks every action; a refusal is shown as it comes.
//
// Attributes: order-id (required), open-dispute (show the dispute form at once).

import { getConnection } from "./connection.js";
import {
  h, clear, money, formatTime, formatDay, formatDateTime, dayKey,
  STATUS_LABELS, DISPUTE_REASONS, DISPUTE_STATUS_LABELS,
} from "./ui.js";
import "./seller-status.js";

const TYPING_SHOW_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;
const LIVE_OFFER = new Set(["requested", "open"]);
const CLOSED_DISPUTE = new Set(["resolved", "cancelled"]);
let instances = 0;

/** Actions allowed now, when order detail is not available (mirrors the server's policies). */
export function deriveActions({ role, order, offer, dispute }) {
  const status = order ? order.status : null;
  const liveOffer = offer && LIVE_OFFER.has(offer.status) ? offer : null;
  const openDispute = dispute && !CLOSED_DISPUTE.has(dispute.status) ? dispute : null;
  const offerActions = [];
  if (status === "awaiting_payment") {
    if (role === "buyer" && !liveOffer) offerActions.push("request");
    if (role === "buyer" && liveOffer && liveOffer.status === "open") offerActions.push("accept", "decline");
    if (role === "seller" && (!liveOffer || liveOffer.status === "requested")) offerActions.push("make");
    if (role === "seller" && liveOffer && liveOffer.status === "open") offerActions.push("withdraw");
  }
  const disputeActions = [];
  if (openDispute) {
    const s = openDispute.status;
    if (role === "buyer") {
      if (s === "countered") disputeActions.push("accept_counter");
      if (["open", "countered", "rejected"].includes(s)) disputeActions.push("escalate");
      if (["open", "countered", "rejected", "escalated"].includes(s)) disputeActions.push("cancel");
      if (s === "awaiting_return") disputeActions.push("add_return_tracking");
    } else {
      if (s === "open") disputeActions.push("accept", "counter", "reject");
      if (s === "return_shipped") disputeActions.push("confirm_return");
    }
  }
  const orderActions = [];
  if (role === "buyer" && order) {
    const feedback = Boolean(order.feedback);
    if (status === "awaiting_payment") orderActions.push("cancel");
    if (status === "awaiting_acceptance") orderActions.push("confirm_receipt");
    const recent = order.completed_at && Date.now() - new Date(order.completed_at).getTime() <= 15 * 86400e3;
    if (!feedback && !openDispute && (status === "awaiting_acceptance" || (status === "completed" && recent))) orderActions.push("open_dispute");
    if (status === "completed" && !feedback && !openDispute) orderActions.push("leave_feedback");
  }
  return {
    order: orderActions,
    offer: { offer_id: liveOffer ? liveOffer.offer_id : null, actions: offerActions },
    dispute: { dispute_id: openDispute ? openDispute.dispute_id : null, actions: disputeActions },
  };
}

export class OrderChat extends HTMLElement {
  connectedCallback() {
    if (this.conn) return;
    this.uid = ++instances;
    this.conn = getConnection();
    this.orderId = this.getAttribute("order-id");
    this.events = []; // oldest first, by seq
    this.seqs = new Set();
    this.pendingEls = new Map(); // client_msg_id -> element
    this.readSeq = { buyer: 0, seller: 0 };
    this.unread = 0;
    this.hasMore = false;
    this.detail = null;
    this.latest = { offer: null, dispute: null };
    this.showDisputeForm = this.hasAttribute("open-dispute");
    this.build();
    this.listen();
    if (this.conn.state === "open") this.join();
  }

  disconnectedCallback() {
    for (const [type, fn] of this.listeners || []) this.conn.removeEventListener(type, fn);
    document.removeEventListener("visibilitychange", this.onVisible);
    clearTimeout(this.typingTimer);
    if (this.joined) this.conn.leave(this.orderId);
    this.conn = null;
  }

  // --- layout ---------------------------------------------------------------------------

  build() {
    const id = `oc${this.uid}`;
    this.classList.add("oc-chat");
    this.titleEl = h("h2", { class: "oc-title", id: `${id}-title` }, `Order ${this.orderId}`);
    this.subtitleEl = h("div", { class: "oc-subtitle" });
    this.badge = h("span", { class: "oc-badge", hidden: true, "aria-label": "unread" });
    this.statusSlot = h("div", { class: "oc-head-status" });
    this.commerce = h("section", { class: "oc-commerce", "aria-label": "Offer and dispute", hidden: true });
    this.earlierBtn = h("button", { type: "button", class: "oc-earlier", hidden: true, onclick: () => this.loadEarlier() }, "Load earlier messages");
    this.list = h("ol", { class: "oc-events" });
    this.pendingList = h("ol", { class: "oc-pending" });
    this.log = h("div", { class: "oc-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-labelledby": `${id}-title`, tabindex: "0" },
      this.earlierBtn, this.list, this.pendingList);
    this.typingEl = h("div", { class: "oc-typing", "aria-live": "polite" });
    this.input = h("textarea", { id: `${id}-input`, rows: "2", maxlength: "4000", required: true, placeholder: "Write a message…" });
    this.input.addEventListener("input", () => this.onTyping());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.form.requestSubmit(); }
    });
    this.form = h("form", { class: "oc-compose", onsubmit: (e) => { e.preventDefault(); this.send(); } },
      h("label", { for: `${id}-input`, class: "oc-sr" }, "Message"),
      this.input,
      h("button", { type: "submit", class: "oc-send" }, "Send"));
    this.errorEl = h("div", { class: "oc-error", role: "alert" });
    clear(this).append(
      h("header", { class: "oc-head" }, h("div", {}, this.titleEl, this.subtitleEl), this.statusSlot, this.badge),
      this.commerce, this.log, this.typingEl, this.errorEl, this.form,
    );
  }

  listen() {
    this.listeners = [
      ["hello", () => { if (!this.joined) this.join(); }],
      ["thread.event", (e) => { if (e.detail.orderId === this.orderId) this.onEvent(e.detail.event); }],
      ["outbox", (e) => { if (e.detail.orderId === this.orderId) this.onOutbox(e.detail); }],
      ["thread.read_updated", (e) => this.onReadUpdated(e.detail)],
      ["typing.started", (e) => this.onTypingStarted(e.detail)],
      ["unread.updated", (e) => { if (e.detail.order_id === this.orderId) this.setUnread(e.detail.unread); }],
      ["state", () => {
        for (const el of this.pendingEls.values()) {
          if (!el.classList.contains("oc-failed")) el.querySelector(".oc-state").textContent = this.conn.state === "open" ? "Sending…" : "Waiting for connection…";
        }
      }],
      ["rejoined", (e) => { if (e.detail.orderId === this.orderId) this.applyReadSeq(e.detail.data.read_seq); }],
    ];
    for (const [type, fn] of this.listeners) this.conn.addEventListener(type, fn);
    this.onVisible = () => this.markRead();
    document.addEventListener("visibilitychange", this.onVisible);
  }

  // --- joining and history ---------------------------------------------------------------

  async join() {
    this.joined = true;
    try {
      const data = await this.conn.join(this.orderId);
      this.role = data.role;
      this.order = data.order;
      this.hasMore = data.has_more;
      const readBefore = (data.read_seq && data.read_seq[data.role]) || 0;
      this.applyReadSeq(data.read_seq);
      this.events = [];
      this.seqs.clear();
      this.addEvents(data.events || []);
      // Where the reader left off: the first event after their marker by someone else
      // (if it was not loaded, the oldest loaded one). The thread opens there, below a
      // "New messages" divider, or at its newest event when nothing is unread.
      const me = this.conn.user?.id;
      const unseen = (data.unread || 0) > 0 ? this.events.filter((e) => e.seq > readBefore && e.author_id !== me) : [];
      this.firstUnreadSeq = unseen.length ? unseen[0].seq : null;
      this.renderAll();
      this.renderHead();
      this.setUnread(data.unread || 0);
      this.refreshDetail();
      this.markRead();
      this.dispatchEvent(new CustomEvent("chat-ready", { bubbles: true, detail: { orderId: this.orderId, role: this.role } }));
    } catch (err) {
      this.joined = false;
      this.showError(err.code === "not_found" ? "This order's chat is not available to you." : (err.message || "Could not open the chat."));
    }
  }

  addEvents(events) {
    for (const event of events) {
      if (this.seqs.has(event.seq)) continue;
      this.seqs.add(event.seq);
      this.events.push(event);
      this.track(event);
    }
    this.events.sort((a, b) => a.seq - b.seq);
  }

  track(event) {
    const data = event.data || {};
    if (data.offer) this.latest.offer = data.offer;
    if (data.dispute) this.latest.dispute = data.dispute;
    if (data.order && this.order) this.order = { ...this.order, ...data.order };
  }

  async loadEarlier() {
    const first = this.events.length ? this.events[0].seq : null;
    if (!first) return;
    this.earlierBtn.disabled = true;
    try {
      const page = await this.conn.fetchJson(`/api/threads/${encodeURIComponent(this.orderId)}/events/?before_seq=${first}&limit=50`);
      const keepScroll = this.log.scrollHeight - this.log.scrollTop;
      this.addEvents(page.events || []);
      this.hasMore = page.has_more;
      this.renderAll();
      this.log.scrollTop = this.log.scrollHeight - keepScroll;
    } catch (err) {
      this.showError(err.message || "Could not load earlier messages.");
    } finally {
      this.earlierBtn.disabled = false;
    }
  }

  onEvent(event) {
    if (this.seqs.has(event.seq)) return;
    const wasLast = !this.events.length || event.seq > this.events[this.events.length - 1].seq;
    this.addEvents([event]);
    if (event.client_msg_id && this.pendingEls.has(event.client_msg_id) && event.author_id === this.conn.user?.id) {
      this.pendingEls.get(event.client_msg_id).remove();
      this.pendingEls.delete(event.client_msg_id);
    }
    if (wasLast) this.appendEvent(event); else this.renderAll();
    const mine = event.author_id && event.author_id === this.conn.user?.id;
    if (!mine) this.typingEl.textContent = "";
    if (event.kind !== "message") {
      this.renderHead();
      this.refreshDetail();
    }
    // Protocol 2: an open thread gets no unread.updated or thread.read_updated for its own
    // events; what they change is derived here. An event's author has read up to it, and
    // anything from someone else is unread until this page marks it read.
    if (event.author_role === "buyer" || event.author_role === "seller") {
      this.readSeq[event.author_role] = Math.max(this.readSeq[event.author_role] || 0, event.seq);
    }
    this.setUnread(mine ? 0 : this.unread + 1);
    this.renderSeen();
    this.markRead();
  }

  // --- rendering --------------------------------------------------------------------------

  renderHead() {
    if (!this.order) return;
    const o = this.order;
    this.titleEl.textContent = `Order ${o.order_id} · ${o.item_title}`;
    this.subtitleEl.textContent = `${STATUS_LABELS[o.status] || o.status} · ${money(o.amount, o.currency)}`;
    if (this.role === "buyer" && !this.statusSlot.firstChild) {
      this.statusSlot.append(h("span", { class: "oc-with" }, o.supplier_name, " "), h("seller-status", { "seller-id": o.seller_id }));
    } else if (this.role === "seller" && !this.statusSlot.firstChild) {
      this.statusSlot.append(h("span", { class: "oc-with" }, `Buyer: ${o.buyer_id}`));
    }
  }

  renderAll() {
    this.log.setAttribute("aria-busy", "true");
    clear(this.list);
    this.lastDay = null;
    for (const event of this.events) {
      if (event.seq === this.firstUnreadSeq) this.list.append(h("li", { class: "oc-unread-divider", role: "separator" }, "New messages"));
      this.appendEvent(event, false);
    }
    this.earlierBtn.hidden = !this.hasMore;
    this.log.removeAttribute("aria-busy");
    this.renderSeen();
    this.scrollToReadingPoint();
  }

  /** The newest event in view, or the "New messages" divider at the top when what is
   * unread is taller than the view. Again once the panel has its final size (the chat
   * may be laid out after it was filled). */
  scrollToReadingPoint() {
    const place = () => {
      const divider = this.list.querySelector(".oc-unread-divider");
      // The divider's position in the log's content, whatever the log's scroll is now.
      const at = divider ? divider.getBoundingClientRect().top - this.log.getBoundingClientRect().top + this.log.scrollTop : 0;
      if (divider && this.log.scrollHeight - at > this.log.clientHeight) this.log.scrollTop = at;
      else this.scrollDown();
    };
    place();
    requestAnimationFrame(place);
  }

  appendEvent(event, scroll = true) {
    const day = dayKey(event.created_at);
    if (day !== this.lastDay) {
      this.lastDay = day;
      this.list.append(h("li", { class: "oc-day", role: "separator" }, formatDay(event.created_at)));
    }
    this.list.append(this.eventEl(event));
    if (scroll) this.scrollDown();
  }

  authorLabel(event) {
    if (event.author_id && event.author_id === this.conn.user?.id) return "You";
    if (event.author_role === "buyer") return "Buyer";
    if (event.author_role === "seller") return this.order ? this.order.supplier_name : "Seller";
    return "Update";
  }

  eventEl(event) {
    const time = h("time", { datetime: event.created_at, title: formatDateTime(event.created_at) }, formatTime(event.created_at));
    if (event.kind === "message") {
      const mine = event.author_id === this.conn.user?.id;
      return h("li", { class: `oc-msg ${mine ? "oc-mine" : "oc-theirs"}`, dataset: { seq: event.seq } },
        h("div", { class: "oc-meta" }, h("span", { class: "oc-author" }, this.authorLabel(event)), " ", time),
        h("div", { class: "oc-body" }, event.body));
    }
    return h("li", { class: `oc-note oc-note-${event.kind}`, dataset: { seq: event.seq } },
      h("span", { class: "oc-note-body" }, event.body || event.kind), " ", time);
  }

  renderSeen() {
    for (const el of this.list.querySelectorAll(".oc-seen")) el.remove();
    if (!this.role) return;
    const other = this.role === "buyer" ? "seller" : "buyer";
    const theirs = this.readSeq[other] || 0;
    const me = this.conn.user?.id;
    const mine = this.events.filter((e) => e.kind === "message" && e.author_id === me);
    const last = mine[mine.length - 1];
    if (last && last.seq <= theirs) {
      const el = this.list.querySelector(`[data-seq="${last.seq}"]`);
      if (el) el.append(h("div", { class: "oc-seen" }, "Seen"));
    }
  }

  scrollDown() { this.log.scrollTop = this.log.scrollHeight; }

  setUnread(n) {
    const changed = this.unread !== (n || 0);
    this.unread = n || 0;
    // The page around the widget (Manage Orders' card and tabs) hears of it: an open
    // thread's own events bring no unread.updated in protocol 2.
    if (changed) this.dispatchEvent(new CustomEvent("chat-unread", { bubbles: true, detail: { orderId: this.orderId, unread: this.unread } }));
    this.badge.hidden = !this.unread;
    this.badge.textContent = String(this.unread);
    this.badge.setAttribute("aria-label", `${this.unread} unread`);
  }

  showError(text) {
    this.errorEl.textContent = text || "";
  }

  // --- reading, typing --------------------------------------------------------------------

  applyReadSeq(readSeq) {
    if (!readSeq) return;
    this.readSeq = { ...this.readSeq, ...readSeq };
    this.renderSeen();
  }

  onReadUpdated(frame) {
    if (frame.order_id !== this.orderId || !this.role) return;
    const who = this.order && frame.user_id === this.order.buyer_id ? "buyer" : "seller";
    this.readSeq[who] = Math.max(this.readSeq[who] || 0, frame.seq);
    this.renderSeen();
  }

  markRead() {
    if (!this.events.length || document.visibilityState !== "visible" || !this.isConnected) return;
    const last = this.events[this.events.length - 1].seq;
    const mine = this.role && (this.readSeq[this.role] || 0);
    if (mine >= last) return;
    this.readSeq[this.role] = last;
    this.conn.request("thread.read", { order_id: this.orderId, seq: last })
      .then((data) => this.setUnread(data.unread))
      .catch(() => { this.readSeq[this.role] = mine; });
  }

  onTyping() {
    const now = Date.now();
    if (this.conn.state !== "open" || now - (this.typingSentAt || 0) < TYPING_SEND_EVERY_MS) return;
    this.typingSentAt = now;
    this.conn.request("typing.start", { order_id: this.orderId }).catch(() => {});
  }

  onTypingStarted(frame) {
    if (frame.order_id !== this.orderId || frame.user_id === this.conn.user?.id) return;
    const who = this.role === "buyer" ? (this.order?.supplier_name || "The seller") : "The buyer";
    this.typingEl.textContent = `${who} is typing…`;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => { this.typingEl.textContent = ""; }, TYPING_SHOW_MS);
  }

  // --- sending ----------------------------------------------------------------------------

  send() {
    const body = this.input.value;
    if (!body.trim()) return;
    this.input.value = "";
    this.showError("");
    this.conn.sendMessage(this.orderId, body);
    this.input.focus();
  }

  onOutbox({ clientMsgId, body, status, error }) {
    let el = this.pendingEls.get(clientMsgId);
    if (status === "sent") {
      if (el) el.remove();
      this.pendingEls.delete(clientMsgId);
      return;
    }
    if (!el) {
      el = h("li", { class: "oc-msg oc-mine oc-unsent" },
        h("div", { class: "oc-meta" }, h("span", { class: "oc-author" }, "You"), " ", h("span", { class: "oc-state" })),
        h("div", { class: "oc-body" }, body));
      this.pendingEls.set(clientMsgId, el);
      this.pendingList.append(el);
      this.scrollDown();
    }
    const stateEl = el.querySelector(".oc-state");
    clear(stateEl);
    el.classList.toggle("oc-failed", status === "failed");
    if (status === "failed") {
      stateEl.append(`Not sent${error && error.message ? `: ${error.message}` : ""} `,
        h("button", { type: "button", class: "oc-retry", onclick: () => this.conn.retryMessage(clientMsgId) }, "Retry"));
    } else {
      stateEl.append(this.conn.state === "open" ? "Sending…" : "Waiting for connection…");
    }
  }

  // --- commerce ---------------------------------------------------------------------------

  refreshDetail() {
    clearTimeout(this.detailTimer);
    this.detailTimer = setTimeout(async () => {
      try {
        this.detail = await this.conn.fetchJson(`/api/orders/${encodeURIComponent(this.orderId)}/`);
        this.order = { ...this.order, ...this.detail };
        this.renderHead();
      } catch (_) {
        this.detail = null; // derive from the thread instead
      }
      this.renderCommerce();
    }, 100);
  }

  currentState() {
    if (this.detail) {
      const d = this.detail;
      const offer = d.offers && d.offers.find((o) => LIVE_OFFER.has(o.status)) || (d.offers && d.offers[0]) || null;
      return { actions: d.allowed_actions, offer, dispute: d.dispute };
    }
    const state = { role: this.role, order: this.order, offer: this.latest.offer, dispute: this.latest.dispute };
    return { actions: deriveActions(state), offer: state.offer, dispute: state.dispute };
  }

  async act(type, payload, okText) {
    this.commerceStatus.textContent = "Working…";
    try {
      await this.conn.request(type, payload);
      this.commerceStatus.textContent = okText || "Done.";
      this.showDisputeForm = false;
      this.refreshDetail();
    } catch (err) {
      this.commerceStatus.textContent = err.message || "That did not work.";
    }
  }

  renderCommerce() {
    const { actions, offer, dispute } = this.currentState();
    const hadFocus = this.commerce.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    clear(this.commerce);
    this.commerceStatus = h("div", { class: "oc-commerce-status", role: "status" });
    const parts = [this.offerCard(actions.offer || { actions: [] }, offer), this.disputePanel(actions, dispute)].filter(Boolean);
    if (!parts.length) { this.commerce.hidden = true; return; }
    this.commerce.hidden = false;
    this.commerce.append(...parts, this.commerceStatus);
    if (hadFocus) this.commerce.querySelector(`[data-key="${hadFocus}"]`)?.focus();
  }

  offerCard(offerActions, offer) {
    const can = new Set(offerActions.actions || []);
    const live = offer && LIVE_OFFER.has(offer.status) ? offer : null;
    if (!can.size && !live) return null;
    const id = `oc${this.uid}`;
    const card = h("div", { class: "oc-card oc-offer" }, h("h3", {}, "Price offer"));
    if (live && live.status === "open") {
      card.append(h("p", { class: "oc-offer-price" }, `Offer: ${money(live.price, live.currency)}`,
        live.previous_amount ? ` (was ${live.previous_amount})` : "",
        live.expires_at ? ` · valid until ${formatDateTime(live.expires_at)}` : ""));
      if (live.note) card.append(h("p", { class: "oc-quote" }, live.note));
    } else if (live && live.status === "requested") {
      card.append(h("p", {}, this.role === "buyer" ? "You asked the seller for an offer." : "The buyer asked for a better price."));
      if (live.request_note) card.append(h("p", { class: "oc-quote" }, live.request_note));
    }
    const offerId = offerActions.offer_id || (live && live.offer_id);
    const row = h("div", { class: "oc-actions" });
    if (can.has("request")) {
      const note = h("input", { id: `${id}-reqnote`, type: "text", maxlength: "500", placeholder: "e.g. Would you take 20?" });
      card.append(h("label", { for: `${id}-reqnote` }, "Note to the seller (optional)"), note);
      row.append(h("button", { type: "button", "data-key": "request", onclick: () => this.act("offer.request", { order_id: this.orderId, ...(note.value.trim() ? { note: note.value.trim() } : {}) }, "Offer requested.") }, "Request offer"));
    }
    if (can.has("accept")) row.append(h("button", { type: "button", class: "oc-primary", "data-key": "accept", onclick: () => this.act("offer.accept", { offer_id: offerId }, "Offer accepted.") }, "Accept offer"));
    if (can.has("decline")) row.append(h("button", { type: "button", "data-key": "decline", onclick: () => this.act("offer.decline", { offer_id: offerId }, "Offer declined.") }, "Decline"));
    if (can.has("withdraw")) row.append(h("button", { type: "button", "data-key": "withdraw", onclick: () => this.act("offer.withdraw", { offer_id: offerId }, "Offer withdrawn.") }, "Withdraw offer"));
    if (can.has("make")) {
      const price = h("input", { id: `${id}-price`, type: "text", inputmode: "decimal", pattern: "[0-9]+([.][0-9]{1,2})?", required: true, placeholder: this.order ? this.order.amount : "" });
      const note = h("input", { id: `${id}-note`, type: "text", maxlength: "500" });
      const form = h("form", { class: "oc-form", onsubmit: (e) => {
        e.preventDefault();
        this.act("offer.make", { order_id: this.orderId, price: price.value.trim(), ...(note.value.trim() ? { note: note.value.trim() } : {}) }, "Offer sent.");
      } },
      h("label", { for: `${id}-price` }, `Offer price (${this.order ? this.order.currency : ""})`), price,
      h("label", { for: `${id}-note` }, "Note (optional)"), note,
      h("button", { type: "submit", class: "oc-primary", "data-key": "make" }, "Make offer"));
      card.append(form);
    }
    if (row.firstChild) card.append(row);
    return card;
  }

  disputePanel(actions, dispute) {
    const orderActions = new Set(actions.order || []);
    const can = new Set((actions.dispute && actions.dispute.actions) || []);
    const open = dispute && !CLOSED_DISPUTE.has(dispute.status) ? dispute : null;
    const id = `oc${this.uid}`;
    if (!open && !(dispute && dispute.status === "resolved") && !orderActions.has("open_dispute")) return null;
    const panel = h("div", { class: "oc-card oc-dispute" }, h("h3", {}, "Dispute"));
    if (dispute) {
      const cur = dispute.currency;
      panel.append(h("p", { class: "oc-dispute-status" }, `Status: ${DISPUTE_STATUS_LABELS[dispute.status] || dispute.status}`));
      panel.append(h("p", {}, `Reason: ${DISPUTE_REASONS[dispute.reason] || dispute.reason} · refund asked ${money(dispute.refund_amount, cur)}`,
        dispute.return_item ? " · with return" : ""));
      if (dispute.counter_amount) panel.append(h("p", { class: "oc-counter" }, `Seller's counter offer: ${money(dispute.counter_amount, cur)}`));
      if (dispute.agreed_amount) panel.append(h("p", {}, `Agreed refund: ${money(dispute.agreed_amount, cur)}`));
      if (dispute.seller_note) panel.append(h("p", { class: "oc-quote" }, dispute.seller_note));
      if (open && dispute.respond_by && dispute.status === "open") panel.append(h("p", { class: "oc-hint" }, `The seller answers by ${formatDateTime(dispute.respond_by)}.`));
    }
    const disputeId = (actions.dispute && actions.dispute.dispute_id) || (open && open.dispute_id);
    const row = h("div", { class: "oc-actions" });
    const d = (type, label, extra = {}, key = type) => h("button", { type: "button", "data-key": key, ...extra, onclick: () => this.act(type, { dispute_id: disputeId }, "Done.") }, label);
    if (can.has("accept_counter")) row.append(d("dispute.accept_counter", "Accept counter offer", { class: "oc-primary" }));
    if (can.has("escalate")) row.append(d("dispute.escalate", "Escalate to the marketplace"));
    if (can.has("cancel")) row.append(d("dispute.cancel", "Cancel dispute"));
    if (can.has("confirm_return")) row.append(d("dispute.confirm_return", "Confirm the item came back"));
    if (can.has("accept")) row.append(h("button", { type: "button", class: "oc-primary", "data-key": "d-accept", onclick: () => this.act("dispute.respond", { dispute_id: disputeId, action: "accept" }) }, "Accept refund"));
    if (can.has("reject")) row.append(h("button", { type: "button", "data-key": "d-reject", onclick: () => this.act("dispute.respond", { dispute_id: disputeId, action: "reject" }) }, "Reject"));
    if (row.firstChild) panel.append(row);
    if (can.has("counter")) {
      const amount = h("input", { id: `${id}-counter`, type: "text", inputmode: "decimal", required: true });
      const note = h("input", { id: `${id}-cnote`, type: "text", maxlength: "500" });
      panel.append(h("form", { class: "oc-form", onsubmit: (e) => {
        e.preventDefault();
        this.act("dispute.respond", { dispute_id: disputeId, action: "counter", refund_amount: amount.value.trim(), ...(note.value.trim() ? { note: note.value.trim() } : {}) });
      } },
      h("label", { for: `${id}-counter` }, "Counter offer: refund amount"), amount,
      h("label", { for: `${id}-cnote` }, "Note to the buyer (optional)"), note,
      h("button", { type: "submit", "data-key": "counter" }, "Send counter offer")));
    }
    if (can.has("add_return_tracking")) {
      const tracking = h("input", { id: `${id}-rtrack`, type: "text", required: true, maxlength: "64" });
      panel.append(h("form", { class: "oc-form", onsubmit: (e) => {
        e.preventDefault();
        this.act("dispute.add_return_tracking", { dispute_id: disputeId, tracking_number: tracking.value.trim() });
      } }, h("label", { for: `${id}-rtrack` }, "Return tracking number"), tracking, h("button", { type: "submit" }, "Send")));
    }
    if (orderActions.has("open_dispute")) {
      if (!this.showDisputeForm) {
        panel.append(h("button", { type: "button", "data-key": "open-dispute", onclick: () => { this.showDisputeForm = true; this.renderCommerce(); this.commerce.querySelector("select")?.focus(); } }, "Open a dispute"));
      } else {
        panel.append(this.disputeForm(id));
      }
    }
    return panel;
  }

  disputeForm(id) {
    const reason = h("select", { id: `${id}-reason`, required: true },
      ...Object.entries(DISPUTE_REASONS).map(([value, label]) => h("option", { value }, label)));
    const amount = h("input", { id: `${id}-refund`, type: "text", inputmode: "decimal", required: true, value: this.order ? this.order.amount : "" });
    const ret = h("input", { id: `${id}-return`, type: "checkbox" });
    const details = h("textarea", { id: `${id}-details`, rows: "3", maxlength: "2000" });
    return h("form", { class: "oc-form oc-dispute-form", onsubmit: (e) => {
      e.preventDefault();
      this.act("dispute.open", { order_id: this.orderId, reason: reason.value, refund_amount: amount.value.trim(), return_item: ret.checked, details: details.value }, "Dispute opened.");
    } },
    h("label", { for: `${id}-reason` }, "Reason"), reason,
    h("label", { for: `${id}-refund` }, `Refund amount (${this.order ? this.order.currency : ""})`), amount,
    h("div", { class: "oc-check" }, ret, h("label", { for: `${id}-return` }, "I will return the item")),
    h("label", { for: `${id}-details` }, "Details"), details,
    h("div", { class: "oc-actions" },
      h("button", { type: "submit", class: "oc-primary", "data-key": "submit-dispute" }, "Submit dispute"),
      h("button", { type: "button", onclick: () => { this.showDisputeForm = false; this.renderCommerce(); } }, "Not now")));
  }
}

if (!customElements.get("order-chat")) customElements.define("order-chat", OrderChat);
