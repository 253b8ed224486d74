// Small DOM helpers. Text is only ever set as text (createTextNode / textContent): no HTML
// from users, or from the server, is parsed anywhere in these modules.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function money(amount, currency) {
  if (amount === null || amount === undefined) return "";
  return `${currency || ""} ${amount}`.trim();
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** Times are shown in the viewer's time zone (the browser's). */
export function formatTime(iso) { return iso ? timeFmt.format(new Date(iso)) : ""; }
export function formatDay(iso) { return iso ? dayFmt.format(new Date(iso)) : ""; }
export function formatDateTime(iso) { return iso ? dateTimeFmt.format(new Date(iso)) : ""; }
export function dayKey(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export const STATUS_LABELS = {
  awaiting_payment: "Awaiting payment",
  awaiting_shipment: "Awaiting shipment",
  awaiting_acceptance: "Goods awaiting acceptance",
  completed: "Completed",
  cancelled: "Cancelled",
};

export const DISPUTE_REASONS = {
  not_as_described: "Not as described",
  wrong_colour: "Wrong colour",
  wrong_size: "Wrong size",
  works_poorly: "Works poorly",
  low_quality: "Low quality",
  not_received: "Not received",
};

export const DISPUTE_STATUS_LABELS = {
  open: "Open — waiting for the seller",
  countered: "The seller made a counter offer",
  rejected: "Rejected by the seller",
  escalated: "Escalated to the marketplace",
  awaiting_return: "Settled — return the item",
  return_shipped: "Return shipped",
  resolved: "Resolved",
  cancelled: "Cancelled",
};

/** A dispute's state as a sentence for the party reading it (no internal codes on screen). */
export function disputeSentence(dispute, role = "buyer") {
  const refund = money(dispute.agreed_amount || dispute.refund_amount, dispute.currency);
  const buyer = role === "buyer";
  switch (dispute.status) {
    case "open": return buyer ? `Dispute open: waiting for the seller's answer to your request for ${refund}.` : `The buyer asks for a refund of ${refund}: please answer.`;
    case "countered": return buyer ? "Dispute: the seller offered a different refund. Accept it or escalate." : "Dispute: you offered a different refund.";
    case "rejected": return buyer ? "Dispute: the seller rejected your request. You can escalate it to the marketplace." : "Dispute: you rejected the request.";
    case "escalated": return "Dispute escalated: the marketplace is deciding.";
    case "awaiting_return": return buyer ? `Refund of ${refund} agreed: send the item back and add its tracking number.` : `Refund of ${refund} agreed: waiting for the item to come back.`;
    case "return_shipped": return buyer ? "Item on its way back to the seller: the refund follows when it arrives." : "The item is on its way back: confirm when it arrives.";
    case "resolved": return `Dispute resolved: ${refund} refunded, item ${dispute.return_item ? "returned" : "kept"}.`;
    case "cancelled": return buyer ? "You withdrew your dispute." : "The buyer withdrew the dispute.";
    default: return "Dispute in progress.";
  }
}

export function replyTimeText(seconds) {
  if (seconds == null) return ""; // no replies to go by (0: answers at once)
  const minutes = Math.max(1, Math.round(seconds / 60));
  if (minutes < 90) return `usually replies within ${minutes} min`;
  return `usually replies within ${Math.round(minutes / 60)} h`;
}

/** A banner at the top of the page while the shared connection is down. */
export function installOfflineBanner(conn) {
  let banner = document.querySelector(".oc-offline");
  if (!banner) {
    banner = h("div", { class: "oc-offline", role: "status", hidden: true });
    document.body.prepend(banner);
  }
  const update = () => {
    const { state } = conn;
    banner.hidden = state === "open" || state === "connecting";
    document.documentElement.classList.toggle("oc-is-offline", !banner.hidden);
    banner.textContent = state === "closed"
      ? "Chat unavailable: please sign in again."
      : "You are offline. Reconnecting…"; // pending messages say they wait for the connection
  };
  conn.addEventListener("state", update);
  update();
}
