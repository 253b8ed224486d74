"""Authorization on a live server: an order and its thread exist only for its buyer and seller.

* 200 random (user, order) pairs where the user is neither the buyer nor the seller. For
  each pair, every socket command that names the order (or one of its offers or disputes)
  and every HTTP endpoint that does: each answer is ``not_found``, exactly the answer for an
  id that does not exist (so ids cannot be probed), and holds nothing of the order. The
  users' own lists (threads, orders, disputes, counts) hold their orders and no others.
* Each action reserved for one role, tried by the other role in a state in which the right
  role could take it: ``forbidden``. Then the right role takes it (the control).
* Neither kind of refusal writes a row.
* Presence reveals nothing about users who sell nothing.

``thread.leave`` is not swept: it is a no-op for a thread the socket has not joined and
answers ``{}`` for any id, so it cannot tell anything about an order.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async

from chat_service.client import ChatClient
from chat_service.commerce.models import OrderStatus
from chat_service.commerce.services.disputes import dispute_add_return_tracking, dispute_open, dispute_respond
from chat_service.commerce.services.offers import offer_make, offer_request
from chat_service.protocol import frames
from chat_service.threads import services
from tests.factories import make_order, token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAIRS = 200
SEED = 2026
NO_ORDER, NO_OFFER, NO_DISPUTE = "AZ-NO-SUCH-ORDER", "999999999999", "999999999999"
HTTP_CONCURRENCY = 8
# Commands that do not name an order, offer or dispute (presence has its own test below).
NOT_ABOUT_AN_ORDER = {"ping", "thread.leave", "presence.subscribe", "presence.unsubscribe", "notifications.preferences"}


def order_commands(order_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every command naming an order, with fields a participant could send as they are."""
    return [
        ("thread.join", {"order_id": order_id}),
        ("thread.join", {"order_id": order_id, "since_seq": 0}),
        ("message.send", {"order_id": order_id, "client_msg_id": uuid.uuid4().hex, "body": "let me in"}),
        ("thread.read", {"order_id": order_id, "seq": 1}),
        ("typing.start", {"order_id": order_id}),
        ("notifications.mute", {"order_id": order_id, "muted": True}),
        ("offer.request", {"order_id": order_id, "note": "cheaper?"}),
        ("offer.make", {"order_id": order_id, "price": "1.00"}),
        ("order.cancel", {"order_id": order_id}),
        ("order.confirm_receipt", {"order_id": order_id}),
        ("order.leave_feedback", {"order_id": order_id, "rating": 1, "comment": "bad"}),
        (
            "dispute.open",
            {
                "order_id": order_id,
                "reason": "not_received",
                "refund_amount": "1.00",
                "return_item": False,
                "details": "where is it",
            },
        ),
    ]


def offer_commands(offer_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, {"offer_id": offer_id}) for name in ("offer.accept", "offer.decline", "offer.withdraw")]


def dispute_commands(dispute_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("dispute.respond", {"dispute_id": dispute_id, "action": "accept"}),
        ("dispute.respond", {"dispute_id": dispute_id, "action": "counter", "refund_amount": "1.00"}),
        ("dispute.accept_counter", {"dispute_id": dispute_id}),
        ("dispute.escalate", {"dispute_id": dispute_id}),
        ("dispute.cancel", {"dispute_id": dispute_id}),
        ("dispute.add_return_tracking", {"dispute_id": dispute_id, "tracking_number": "LP000000001CN"}),
        ("dispute.confirm_return", {"dispute_id": dispute_id}),
    ]


def http_requests(order_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every HTTP endpoint with an order in its path: (method, path, body)."""
    return [
        ("GET", f"/api/threads/{order_id}/events/", None),
        ("GET", f"/api/threads/{order_id}/events/?after_seq=0", None),
        ("POST", f"/api/threads/{order_id}/messages/", {"client_msg_id": uuid.uuid4().hex, "body": "let me in"}),
        ("POST", f"/api/threads/{order_id}/read/", {"seq": 1}),
        ("POST", f"/api/threads/{order_id}/mute/", {"muted": True}),
        ("GET", f"/api/orders/{order_id}/", None),
    ]


def template(path: str, order_id: str) -> str:
    return path.split("?")[0].replace(order_id, "{order_id}")


# --- The marketplace --------------------------------------------------------------------------


@dataclass
class Market:
    parties: dict[str, tuple[str, str]] = field(default_factory=dict)  # order id -> (buyer, seller)
    offers: dict[str, list[str]] = field(default_factory=dict)
    disputes: dict[str, list[str]] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)  # what only the parties may read

    @property
    def users(self) -> list[str]:
        people = {u for pair in self.parties.values() for u in pair}
        return sorted(people | {f"az-outsider-{i}" for i in range(3)})

    def orders_of(self, user: str) -> set[str]:
        return {o for o, pair in self.parties.items() if user in pair}


def build_market(rng: random.Random) -> Market:
    """30 orders in every state that offers or disputes can be in; some users both buy and sell."""
    market = Market()
    buyers = [f"az-buyer-{i}" for i in range(6)] + ["az-seller-0", "az-seller-1"]
    sellers = [f"az-seller-{i}" for i in range(5)]
    kinds = ["offer", "request", "dispute", "countered", "return", "completed", "shipment", "plain"]
    for i in range(30):
        kind = kinds[i % len(kinds)]
        buyer = rng.choice(buyers)
        seller = rng.choice([s for s in sellers if s != buyer])
        status = {
            "dispute": OrderStatus.AWAITING_ACCEPTANCE,
            "countered": OrderStatus.AWAITING_ACCEPTANCE,
            "return": OrderStatus.AWAITING_ACCEPTANCE,
            "completed": OrderStatus.COMPLETED,
            "shipment": OrderStatus.AWAITING_SHIPMENT,
        }.get(kind, OrderStatus.AWAITING_PAYMENT)
        secret = f"secret-{i}-{uuid.uuid4().hex[:8]}"
        order = make_order(buyer_id=buyer, seller_id=seller, status=status, item_title=f"Item {secret}")
        market.parties[order.pk] = (buyer, seller)
        market.secrets[order.pk] = [secret, buyer, seller]
        services.message_send(user_id=buyer, order_id=order.pk, client_msg_id=f"m{i}", body=f"hello {secret}")
        offers, disputes = market.offers.setdefault(order.pk, []), market.disputes.setdefault(order.pk, [])
        if kind == "offer":
            offers.append(str(offer_make(user_id=seller, order_id=order.pk, price="12.00").pk))
        elif kind == "request":
            offers.append(str(offer_request(user_id=buyer, order_id=order.pk, note="less?").pk))
        elif kind in ("dispute", "countered", "return"):
            dispute = dispute_open(
                user_id=buyer,
                order_id=order.pk,
                reason="not_received",
                refund_amount="10.00",
                return_item=kind == "return",
                details=secret,
            )
            disputes.append(str(dispute.pk))
            if kind == "countered":
                dispute_respond(user_id=seller, dispute_id=str(dispute.pk), action="counter", refund_amount="5.00")
            elif kind == "return":
                dispute_respond(user_id=seller, dispute_id=str(dispute.pk), action="accept")
    return market


# --- Talking to the server ----------------------------------------------------------------------


@dataclass
class Tally:
    socket_requests: int = 0
    http_requests: int = 0
    successes: list[str] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)

    def figures(self) -> str:
        return (
            f"socket commands {self.socket_requests}, HTTP requests {self.http_requests}, "
            f"successes {len(self.successes)}, refusals {dict(self.codes)}"
        )


async def refusal(client: ChatClient, frame_type: str, fields: dict[str, Any], tally: Tally) -> dict[str, Any]:
    reply = await client.request_frame(frame_type, timeout=30, **fields)
    tally.socket_requests += 1
    if reply["ok"]:
        tally.successes.append(f"{frame_type} {fields}: {reply['data']}")
        return {}
    tally.codes[reply["error"]["code"]] += 1
    return reply["error"]


def leaks(answer: Any, secrets: list[str]) -> list[str]:
    text = str(answer)
    return [s for s in secrets if s in text]


async def test_200_strangers_get_not_found_for_every_command_and_endpoint(daphne, http, db_state):
    (server,) = await daphne.start(1, CHAT_SEND_RATE_COUNT="1000000")
    rng = random.Random(SEED)
    market = await database_sync_to_async(build_market)(rng)
    swept_commands = {name for name, _ in order_commands("x") + offer_commands("1") + dispute_commands("1")}
    assert swept_commands == set(frames.COMMANDS) - NOT_ABOUT_AN_ORDER, "a command naming an order is not swept"
    schema = (await asyncio.to_thread(http, "GET", f"{server.http_url}/api/schema/")).json
    order_paths = {
        (method.upper(), path) for path, ops in schema["paths"].items() if "{order_id}" in path for method in ops
    }
    assert {(m, template(p, "X")) for m, p, _ in http_requests("X")} == order_paths, (
        "an endpoint with an order in its path is not swept"
    )

    strangers = [
        (user, order_id) for user in market.users for order_id in market.parties if user not in market.parties[order_id]
    ]
    pairs = rng.sample(strangers, PAIRS)
    clients = {user: await ChatClient.open(server.ws_url, token_for(user)) for user in market.users}
    before = await database_sync_to_async(db_state.snapshot)()
    tally = Tally()
    try:
        # What a request for an id that does not exist gets: a stranger must get exactly that.
        probe = clients[market.users[0]]
        reference = {}
        for name, fields in order_commands(NO_ORDER) + offer_commands(NO_OFFER) + dispute_commands(NO_DISPUTE):
            error = await refusal(probe, name, fields, tally)
            assert error.get("code") == "not_found", (name, error)
            reference[(name, tuple(sorted(fields)))] = error
        http_reference = {}
        for method, path, body in http_requests(NO_ORDER):
            answer = await asyncio.to_thread(
                http, method, server.http_url + path, token=token_for("az-outsider-0"), body=body
            )
            assert answer.status == 404 and answer.is_json, (method, path, answer)
            http_reference[(method, template(path, NO_ORDER))] = answer.json

        async def sweep_socket(user: str, order_ids: list[str]) -> None:
            client = clients[user]
            for order_id in order_ids:
                commands = order_commands(order_id)
                for offer_id in market.offers[order_id]:
                    commands += offer_commands(offer_id)
                for dispute_id in market.disputes[order_id]:
                    commands += dispute_commands(dispute_id)
                for name, fields in commands:
                    error = await refusal(client, name, fields, tally)
                    assert error == reference[(name, tuple(sorted(fields)))], (user, order_id, name, error)
                    assert not leaks(error, market.secrets[order_id]), (user, order_id, name, error)

        limit = asyncio.Semaphore(HTTP_CONCURRENCY)

        async def sweep_http(user: str, order_id: str) -> None:
            token = token_for(user)
            async with limit:
                for method, path, body in http_requests(order_id):
                    answer = await asyncio.to_thread(http, method, server.http_url + path, token=token, body=body)
                    tally.http_requests += 1
                    if answer.status < 400:
                        tally.successes.append(f"{method} {path} as {user}: {answer.status} {answer.raw[:200]!r}")
                        continue
                    assert answer.is_json and answer.json == http_reference[(method, template(path, order_id))], (
                        user,
                        method,
                        path,
                        answer,
                    )
                    tally.codes[f"http {answer.status} {answer.json['error']['code']}"] += 1
                    assert not leaks(answer.raw.decode(), market.secrets[order_id]), (user, path, answer)
                # Searching for the order by its id finds nothing, rather than a 404.
                found = await asyncio.to_thread(
                    http, "GET", f"{server.http_url}/api/orders/?" + urlencode({"order_id": order_id}), token=token
                )
                tally.http_requests += 1
                assert found.status == 200 and found.json["orders"] == [], (user, order_id, found)

        by_user: dict[str, list[str]] = {}
        for user, order_id in pairs:
            by_user.setdefault(user, []).append(order_id)
        await asyncio.gather(
            *(sweep_socket(user, orders) for user, orders in by_user.items()),
            *(sweep_http(user, order_id) for user, order_id in pairs),
        )

        # Each user's own lists: exactly their orders.
        for user in market.users:
            own = market.orders_of(user)
            token = token_for(user)
            lists = {
                "threads": [
                    t["order"]["order_id"]
                    for t in (
                        await asyncio.to_thread(http, "GET", f"{server.http_url}/api/threads/?limit=200", token=token)
                    ).json["threads"]
                ],
                "orders": [
                    o["order_id"]
                    for o in (
                        await asyncio.to_thread(http, "GET", f"{server.http_url}/api/orders/?limit=50", token=token)
                    ).json["orders"]
                ],
                "disputes": [
                    d["order"]["order_id"]
                    for d in (
                        await asyncio.to_thread(http, "GET", f"{server.http_url}/api/disputes/?limit=50", token=token)
                    ).json["disputes"]
                ],
            }
            tally.http_requests += 3
            assert set(lists["threads"]) == own and set(lists["orders"]) == own, (user, lists, own)
            assert set(lists["disputes"]) == {o for o in own if market.disputes[o]}, (user, lists)
            counts = (await asyncio.to_thread(http, "GET", f"{server.http_url}/api/orders/counts/", token=token)).json
            tally.http_requests += 1
            assert counts["all"] == len(own), (user, counts, own)
            joined = clients[user]
            tally.socket_requests += 1
            assert (await joined.request("ping")) == {}  # each socket is still served
    finally:
        for client in clients.values():
            await client.close()
    changed = await database_sync_to_async(db_state.changed_since)(before)
    figures = (
        f"pairs {len(pairs)}, users {len(market.users)}, orders {len(market.parties)}; {tally.figures()}; "
        f"rows changed {len(changed)}"
    )
    print(f"\n[authorization sweep] {figures}")
    assert tally.successes == [], f"{tally.successes[:5]}; {figures}"
    assert changed == {}, f"{changed}; {figures}"
    assert len(pairs) == PAIRS and tally.socket_requests >= PAIRS * len(order_commands("x")), figures


# --- Role-swapped actions ---------------------------------------------------------------------

BUYER, SELLER = "az-role-buyer", "az-role-seller"


@dataclass(frozen=True)
class Swap:
    """``wrong`` tries ``command`` where ``right`` could take it; ``right`` then does."""

    command: str
    fields: dict[str, Any]
    wrong: str
    right: str


def role_scenarios() -> list[Swap]:
    """One fresh order per action, in the state the action needs."""

    def order(status: str = OrderStatus.AWAITING_PAYMENT) -> str:
        return make_order(buyer_id=BUYER, seller_id=SELLER, status=status).pk

    def offer() -> str:
        return str(offer_make(user_id=SELLER, order_id=order(), price="12.00").pk)

    def dispute(*, then: str | None = None, return_item: bool = False) -> str:
        dispute_id = str(
            dispute_open(
                user_id=BUYER,
                order_id=order(OrderStatus.AWAITING_ACCEPTANCE),
                reason="wrong_size",
                refund_amount="10.00",
                return_item=return_item,
            ).pk
        )
        if then == "counter":
            dispute_respond(user_id=SELLER, dispute_id=dispute_id, action="counter", refund_amount="4.00")
        elif then in ("awaiting_return", "return_shipped"):
            dispute_respond(user_id=SELLER, dispute_id=dispute_id, action="accept")
            if then == "return_shipped":
                dispute_add_return_tracking(user_id=BUYER, dispute_id=dispute_id, tracking_number="LP1")
        return dispute_id

    buyer_only = [
        ("offer.request", {"order_id": order()}),
        ("offer.accept", {"offer_id": offer()}),
        ("offer.decline", {"offer_id": offer()}),
        ("order.cancel", {"order_id": order()}),
        ("order.confirm_receipt", {"order_id": order(OrderStatus.AWAITING_ACCEPTANCE)}),
        (
            "order.leave_feedback",
            {"order_id": make_order(buyer_id=BUYER, seller_id=SELLER, status=OrderStatus.COMPLETED).pk, "rating": 4},
        ),
        (
            "dispute.open",
            {
                "order_id": order(OrderStatus.AWAITING_ACCEPTANCE),
                "reason": "not_received",
                "refund_amount": "5.00",
                "return_item": False,
            },
        ),
        ("dispute.accept_counter", {"dispute_id": dispute(then="counter")}),
        ("dispute.escalate", {"dispute_id": dispute()}),
        ("dispute.cancel", {"dispute_id": dispute()}),
        (
            "dispute.add_return_tracking",
            {"dispute_id": dispute(then="awaiting_return", return_item=True), "tracking_number": "LP2"},
        ),
    ]
    seller_only = [
        ("offer.make", {"order_id": order(), "price": "9.00"}),
        ("offer.withdraw", {"offer_id": offer()}),
        ("dispute.respond", {"dispute_id": dispute(), "action": "accept"}),
        ("dispute.respond", {"dispute_id": dispute(), "action": "reject"}),
        ("dispute.respond", {"dispute_id": dispute(), "action": "counter", "refund_amount": "3.00"}),
        ("dispute.confirm_return", {"dispute_id": dispute(then="return_shipped", return_item=True)}),
    ]
    return [Swap(c, f, wrong=SELLER, right=BUYER) for c, f in buyer_only] + [
        Swap(c, f, wrong=BUYER, right=SELLER) for c, f in seller_only
    ]


async def test_actions_of_one_role_are_forbidden_to_the_other_and_change_nothing(daphne, db_state):
    (server,) = await daphne.start(1)
    swaps = await database_sync_to_async(role_scenarios)()
    commerce = set(frames.COMMERCE_TYPES)
    assert {s.command for s in swaps} == commerce, f"not swapped: {commerce - {s.command for s in swaps}}"
    clients = {user: await ChatClient.open(server.ws_url, token_for(user)) for user in (BUYER, SELLER)}
    before = await database_sync_to_async(db_state.snapshot)()
    refused: Counter[str] = Counter()
    successes = []
    try:
        for swap in swaps:
            reply = await clients[swap.wrong].request_frame(swap.command, **swap.fields)
            if reply["ok"]:
                successes.append((swap.command, swap.wrong))
                continue
            refused[reply["error"]["code"]] += 1
            assert reply["error"]["code"] == "forbidden", (swap, reply)
        changed = await database_sync_to_async(db_state.changed_since)(before)
        # The control: the right role may take every one of these actions, now.
        controls = Counter()
        for swap in swaps:
            reply = await clients[swap.right].request_frame(swap.command, **swap.fields)
            assert reply["ok"], (swap, reply)
            controls[swap.right] += 1
    finally:
        for client in clients.values():
            await client.close()
    figures = (
        f"role-swapped attempts {len(swaps)}, successes {len(successes)}, refusals {dict(refused)}, "
        f"rows changed {len(changed)}; controls by the right role {sum(controls.values())} ok"
    )
    print(f"\n[role swap] {figures}")
    assert successes == [], f"{successes}; {figures}"
    assert changed == {}, f"{changed}; {figures}"


# --- Presence -----------------------------------------------------------------------------------


async def test_presence_says_nothing_about_users_who_sell_nothing(daphne, http):
    (server,) = await daphne.start(1)
    await database_sync_to_async(make_order)(buyer_id="az-only-buyer", seller_id="az-real-seller")
    online_buyer = await ChatClient.open(server.ws_url, token_for("az-only-buyer"))
    seller = await ChatClient.open(server.ws_url, token_for("az-real-seller"))
    watcher = await ChatClient.open(server.ws_url, token_for("az-watcher"))
    try:
        ids = ["az-only-buyer", "az-never-seen", "az-real-seller"]
        snapshot = (await watcher.request("presence.subscribe", seller_ids=ids))["sellers"]
        over_http = (
            await asyncio.to_thread(
                http,
                "GET",
                f"{server.http_url}/api/presence/?seller_ids={','.join(ids)}",
                token=token_for("az-watcher"),
            )
        ).json["sellers"]
        for sellers in (snapshot, over_http):
            assert sellers["az-only-buyer"] == sellers["az-never-seen"], sellers
            assert sellers["az-real-seller"]["status"] == "online", sellers  # the control
        await online_buyer.close()  # a change the watcher must not hear of
        await asyncio.sleep(0.5)
        assert [f for f in watcher.drain() if f.get("seller_id") == "az-only-buyer"] == []
    finally:
        for client in (seller, watcher):
            await client.close()
