"""The commerce commands of the socket (offer.*, dispute.*, order.*): one table.

Each entry names the service that performs the command, the fields it requires, the
optional ones it accepts, and how its result is framed. Identifiers are checked here
(format only); every other field is validated by the service, which also authorizes.
The consumer parses a frame with ``parse`` and runs it with ``run`` (one service call in
the database thread, pushes after commit), so the transport holds no rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chat_service.commerce.models import Dispute, Offer, Order
from chat_service.commerce.services import disputes, offers, orders
from chat_service.protocol.commerce import dispute_wire, offer_wire, order_wire
from chat_service.protocol.errors import BadRequest
from chat_service.protocol.frames import ID_RE, NUMERIC_ID_RE


@dataclass(frozen=True, slots=True)
class Spec:
    service: Callable[..., Any]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def frame(self, result: Offer | Dispute | Order) -> dict[str, Any]:
        if isinstance(result, Offer):
            return {"offer": offer_wire(result)}
        if isinstance(result, Dispute):
            return {"dispute": dispute_wire(result)}
        return {"order": order_wire(result)}


SPECS: dict[str, Spec] = {
    "offer.request": Spec(offers.offer_request, ("order_id",), ("note",)),
    "offer.make": Spec(offers.offer_make, ("order_id", "price"), ("currency", "note", "expires_in_s")),
    "offer.accept": Spec(offers.offer_accept, ("offer_id",)),
    "offer.decline": Spec(offers.offer_decline, ("offer_id",)),
    "offer.withdraw": Spec(offers.offer_withdraw, ("offer_id",)),
    "dispute.open": Spec(disputes.dispute_open, ("order_id", "reason", "refund_amount", "return_item"), ("details",)),
    "dispute.respond": Spec(disputes.dispute_respond, ("dispute_id", "action"), ("refund_amount", "note")),
    "dispute.accept_counter": Spec(disputes.dispute_accept_counter, ("dispute_id",)),
    "dispute.escalate": Spec(disputes.dispute_escalate, ("dispute_id",)),
    "dispute.cancel": Spec(disputes.dispute_cancel, ("dispute_id",)),
    "dispute.add_return_tracking": Spec(disputes.dispute_add_return_tracking, ("dispute_id", "tracking_number")),
    "dispute.confirm_return": Spec(disputes.dispute_confirm_return, ("dispute_id",)),
    "order.cancel": Spec(orders.order_cancel, ("order_id",)),
    "order.confirm_receipt": Spec(orders.order_confirm_receipt, ("order_id",)),
    "order.leave_feedback": Spec(orders.order_leave_feedback, ("order_id", "rating"), ("comment",)),
}


def arguments(frame_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The service's keyword arguments from a frame (or an HTTP body); BadRequest if a
    required field is missing or an id is malformed."""
    spec = SPECS[frame_type]
    kwargs: dict[str, Any] = {}
    for name in spec.required:
        if payload.get(name) is None:
            raise BadRequest(f"{name} is required.", field=name)
        kwargs[name] = payload[name]
    for name in spec.optional:
        if payload.get(name) is not None:
            kwargs[name] = payload[name]
    for name in ("order_id", "offer_id", "dispute_id"):
        if name in kwargs:
            pattern = ID_RE if name == "order_id" else NUMERIC_ID_RE
            if not isinstance(kwargs[name], str) or not pattern.match(kwargs[name]):
                raise BadRequest(f"{name} must be an id string.", field=name)
    return kwargs


def perform(*, frame_type: str, user_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run the command's service (sync; in the database thread) and frame its result."""
    spec = SPECS[frame_type]
    return spec.frame(spec.service(user_id=user_id, **kwargs))
