// One WebSocket per page, shared by every widget on it (docs/embedding.md).
//
// Invariants:
// * Every joined thread remembers the last seq delivered to the page; after a reconnect it is
//   joined again with since_seq, and an event is handed to listeners only when its seq is the
//   next one, so nothing is shown twice or skipped.
// * A message is sent with a client_msg_id and resent after every reconnect until the server
//   acknowledges it (the server de-duplicates by client_msg_id). Only a refusal that cannot
//   succeed by retrying marks it failed; the user may retry it by hand.
// * Reconnects back off exponentially with full jitter; close codes 4500-4999 mean "do not".

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;

function uuid() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class ChatConnection extends EventTarget {
  constructor({ server, token } = {}) {
    super();
    this.server = server || location.origin;
    this.token = token || null;
    this.ws = null;
    this.state = "connecting"; // connecting | open | offline | closed
    this.user = null;
    this.heartbeatS = 25;
    this.attempt = 0;
    this.refCounter = 0;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.threads = new Map(); // order_id -> {lastSeq, joined}
    this.outbox = new Map(); // client_msg_id -> {orderId, body, status, attempts}
    this.presence = new Map(); // seller_id -> latest state
    this.presenceIds = new Set();
    this.lastFrameAt = Date.now();
    this.timers = {};
    window.addEventListener("offline", () => this.drop("browser offline"));
    window.addEventListener("online", () => this.reconnectSoon(0));
    this.open();
  }

  // --- plumbing -------------------------------------------------------------------------

  wsUrl() {
    const url = new URL("/ws/", this.server);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.token) url.searchParams.set("token", this.token);
    return url.toString();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  open() {
    clearTimeout(this.timers.reconnect);
    if (this.state === "closed") return;
    let ws;
    try {
      ws = new WebSocket(this.wsUrl());
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onmessage = (msg) => this.onFrame(ws, msg.data);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {};
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.timers.heartbeat);
    for (const [ref, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject({ code: "disconnected", message: "The connection was lost.", retryable: true });
      this.pending.delete(ref);
    }
    for (const t of this.threads.values()) t.joined = false;
    for (const item of this.outbox.values()) if (item.status === "sending") item.status = "queued";
    if (ev.code >= 4500 && ev.code <= 4999) {
      this.setState("closed");
      this.emit("fatal", { code: ev.code, reason: ev.reason });
      return;
    }
    this.setState("offline");
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.reconnectSoon(Math.round(cap / 2 + Math.random() * (cap / 2))); // jittered
  }

  reconnectSoon(delayMs) {
    if (this.state === "closed" || (this.ws && this.ws.readyState <= 1)) return;
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => this.open(), delayMs);
  }

  /** Close the socket now (it looks dead) and reconnect with backoff. */
  drop(why) {
    const ws = this.ws;
    if (!ws) return;
    this.onClose(ws, { code: 1006, reason: why });
    try { ws.close(); } catch (_) { /* already closed */ }
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a command with a ref; resolves with the reply's data, rejects with its error. */
  request(type, payload = {}) {
    return new Promise((resolve, reject) => {
      if (this.state !== "open") {
        reject({ code: "offline", message: "You are offline. Try again when the connection is back.", retryable: true });
        return;
      }
      const ref = `r${++this.refCounter}`;
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject({ code: "timeout", message: "The server did not answer.", retryable: true });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
      this.send({ type, ref, ...payload });
    });
  }

  onFrame(ws, text) {
    if (ws !== this.ws) return;
    this.lastFrameAt = Date.now();
    let frame;
    try { frame = JSON.parse(text); } catch (_) { return; }
    switch (frame.type) {
      case "hello": return this.onHello(frame);
      case "reply": {
        const p = this.pending.get(frame.ref);
        if (!p) return;
        this.pending.delete(frame.ref);
        clearTimeout(p.timer);
        if (frame.ok) p.resolve(frame.data || {}); else p.reject(frame.error || { code: "internal" });
        return;
      }
      case "thread.event": return this.deliver(frame.order_id, frame.event);
      case "presence.changed": {
        // A push carries the status; the typical reply time comes with the snapshot and
        // is kept (protocol 2).
        const state = { ...(this.presence.get(frame.seller_id) || {}), ...frame };
        this.presence.set(frame.seller_id, state);
        return this.emit("presence", { sellerId: frame.seller_id, state });
      }
      case "pong": return undefined;
      default: return this.emit(frame.type, frame);
    }
  }

  onHello(frame) {
    this.user = frame.user;
    this.heartbeatS = frame.heartbeat_s || 25;
    this.attempt = 0;
    this.setState("open");
    this.emit("hello", frame);
    clearInterval(this.timers.heartbeat);
    const everyMs = Math.max(500, (this.heartbeatS * 1000) / 2);
    this.timers.heartbeat = setInterval(() => {
      // Silent for longer than a ping round should take: the socket is dead.
      if (Date.now() - this.lastFrameAt > everyMs * 3) return this.drop("heartbeat");
      this.send({ type: "ping" });
    }, everyMs);
    // Rejoin what the page had joined, from where it was; resubscribe the indicators.
    for (const orderId of this.threads.keys()) this.rejoin(orderId);
    if (this.presenceIds.size) this.subscribePresence([...this.presenceIds], true);
    this.flushOutbox();
  }

  // --- threads --------------------------------------------------------------------------

  /** Join a thread (first open). Resolves with the join reply. */
  async join(orderId) {
    // Without since_seq: the newest history. A second widget of the same thread gets it too.
    const data = await this.request("thread.join", { order_id: orderId });
    const thread = this.threads.get(orderId) || { lastSeq: 0, joined: false, refs: 0 };
    thread.joined = true;
    thread.refs += 1; // widgets of this thread on the page
    thread.lastSeq = Math.max(thread.lastSeq, data.last_seq || 0);
    this.threads.set(orderId, thread);
    return data;
  }

  async rejoin(orderId) {
    const thread = this.threads.get(orderId);
    try {
      const data = await this.request("thread.join", { order_id: orderId, since_seq: thread.lastSeq });
      thread.joined = true;
      for (const event of data.events || []) this.deliver(orderId, event);
      this.emit("rejoined", { orderId, data });
    } catch (err) {
      if (err.code === "disconnected" || err.code === "offline") return; // the next hello retries
      this.emit("thread.error", { orderId, error: err });
    }
  }

  leave(orderId) {
    const thread = this.threads.get(orderId);
    if (!thread || --thread.refs > 0) return;
    this.threads.delete(orderId);
    if (this.state === "open") this.request("thread.leave", { order_id: orderId }).catch(() => {});
  }

  deliver(orderId, event) {
    const thread = this.threads.get(orderId);
    if (thread) {
      if (event.seq <= thread.lastSeq) return; // seen already
      thread.lastSeq = event.seq;
    }
    this.emit("thread.event", { orderId, event });
  }

  // --- messages -------------------------------------------------------------------------

  /** Queue a message; returns its client_msg_id. Progress arrives as "outbox" events. */
  sendMessage(orderId, body) {
    const clientMsgId = uuid();
    this.outbox.set(clientMsgId, { orderId, body, status: "queued", attempts: 0 });
    this.emit("outbox", { clientMsgId, orderId, body, status: "queued" });
    this.flushOutbox();
    return clientMsgId;
  }

  retryMessage(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    if (!item) return;
    item.status = "queued";
    item.attempts = 0;
    this.emit("outbox", { clientMsgId, orderId: item.orderId, body: item.body, status: "queued" });
    this.flushOutbox();
  }

  flushOutbox() {
    if (this.state !== "open") return;
    for (const [clientMsgId, item] of this.outbox) {
      if (item.status !== "queued") continue;
      item.status = "sending";
      item.attempts += 1;
      this.request("message.send", { order_id: item.orderId, client_msg_id: clientMsgId, body: item.body })
        .then((data) => {
          this.outbox.delete(clientMsgId);
          this.emit("outbox", { clientMsgId, orderId: item.orderId, status: "sent", event: data.event });
          if (data.event) this.deliver(item.orderId, data.event);
        })
        .catch((err) => {
          if (!this.outbox.has(clientMsgId)) return;
          if (err.retryable && item.attempts < 8) {
            item.status = "queued";
            const wait = err.code === "rate_limited" ? (err.retry_after_s || 1) * 1000 : 1000 * item.attempts;
            setTimeout(() => this.flushOutbox(), wait);
            return;
          }
          item.status = "failed";
          this.emit("outbox", { clientMsgId, orderId: item.orderId, status: "failed", error: err });
        });
    }
  }

  // --- presence -------------------------------------------------------------------------

  async subscribePresence(sellerIds, again = false) {
    const fresh = again ? sellerIds : sellerIds.filter((id) => !this.presenceIds.has(id));
    for (const id of fresh) this.presenceIds.add(id);
    if (!fresh.length || this.state !== "open") return;
    for (let i = 0; i < fresh.length; i += 200) {
      try {
        const data = await this.request("presence.subscribe", { seller_ids: fresh.slice(i, i + 200) });
        for (const [sellerId, state] of Object.entries(data.sellers || {})) {
          this.presence.set(sellerId, state);
          this.emit("presence", { sellerId, state });
        }
      } catch (_) { /* resubscribed on the next hello */ }
    }
  }

  // --- HTTP -----------------------------------------------------------------------------

  async fetchJson(path) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(new URL(path, this.server), { headers, credentials: this.token ? "omit" : "same-origin" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw (body.error || { code: "http", message: `HTTP ${response.status}` });
    return body;
  }
}

let shared = null;

/** The page's one connection (created on first use). */
export function getConnection(options) {
  if (!shared) shared = new ChatConnection(options || globalThis.OrderChatConfig || {});
  return shared;
}

export function configure(options) {
  globalThis.OrderChatConfig = { ...(globalThis.OrderChatConfig || {}), ...options };
}
