"""Pure state machines of orders, offers and disputes.

Each machine is a table of ``Rule``s: an action, the states it may start from, the state
it leads to and who may take it. Services ask ``decide``; they never re-implement a rule.
No database, no clock (times are passed in), so every rule is tested without either.

A refusal says why in words a person understands: ``Forbidden`` when the actor may never
take the action, ``InvalidState`` when the actor could, but not in the current state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from chat_service.protocol.errors import Forbidden, InvalidState


class Actor(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    ORDER_SYSTEM = "order_system"  # the marketplace, through the bridge
    WORKER = "worker"  # deadlines: expiry, escalation


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    sources: frozenset[str]
    target: str
    actors: frozenset[Actor]


def rule(action: str, sources: Iterable[str], target: str, *actors: Actor) -> Rule:
    return Rule(action, frozenset(sources), target, frozenset(actors))


def require_actor(rules: Iterable[Rule], *, action: str, actor: Actor, noun: str) -> list[Rule]:
    """The rules of ``action``; Forbidden when ``actor`` may never take it, in any state."""
    candidates = [r for r in rules if r.action == action]
    if not candidates:
        raise AssertionError(f"no rule for action {action!r}")  # a programming error
    if not any(actor in r.actors for r in candidates):
        who = " or ".join(sorted({a.value.replace("_", " ") for r in candidates for a in r.actors}))
        raise Forbidden(f"Only the {who} can {action.replace('_', ' ')} this {noun}.")
    return candidates


def decide(
    rules: Iterable[Rule], *, action: str, state: str, actor: Actor, noun: str, state_label: str | None = None
) -> str:
    """The state ``action`` leads to from ``state``, or a Forbidden/InvalidState refusal."""
    candidates = require_actor(rules, action=action, actor=actor, noun=noun)
    for r in candidates:
        if actor in r.actors and state in r.sources:
            return r.target
    raise InvalidState(f"This {noun} is {state_label or state.replace('_', ' ')}, so it cannot be {_past(action)} now.")


def allowed(rules: Iterable[Rule], *, state: str, actor: Actor) -> list[str]:
    """Actions ``actor`` may take from ``state`` (for "allowed actions" in order detail)."""
    return sorted({r.action for r in rules if actor in r.actors and state in r.sources})


_PAST = {
    "request": "requested",
    "make": "made",
    "accept": "accepted",
    "decline": "declined",
    "withdraw": "withdrawn",
    "expire": "expired",
    "cancel": "cancelled",
    "confirm_receipt": "confirmed as received",
    "respond": "answered",
    "accept_counter": "settled with the counter offer",
    "escalate": "escalated",
    "decide": "decided",
    "add_return_tracking": "given a return tracking number",
    "confirm_return": "confirmed as returned",
}


def _past(action: str) -> str:
    return _PAST.get(action, action.replace("_", " ") + "ed")
