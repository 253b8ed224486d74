"""Seller presence over the socket, in process: the real ASGI stack on the Redis channel
layer, the Redis presence store and PostgreSQL.

Grace periods and TTLs are shortened per test; tests wait past them and then assert on
the frames that did (or did not) arrive, never on how long anything took.
"""

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from channels.db import database_sync_to_async as db
from django.conf import settings
from django.utils import timezone

from chat_service import fanout
from chat_service.commerce.models import Order, OrderStatus
from chat_service.machinery.presence_store import get_presence_store
from presence import services as presence
from tests.factories import make_order
from tests.topics import topic_residue
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)

GRACE_S = 0.3
# Long enough past the grace for the offline check (timer or sweep) to have run.
SETTLE_S = GRACE_S + 0.5
CRASH_TTL_S = 0.3
# After an expected push: how long nothing else may arrive.
QUIET_S = 0.5


@pytest.fixture(autouse=True)
def short_grace(chat):
    chat(PRESENCE_GRACE_S=GRACE_S)


@pytest.fixture
async def sellers():
    """Orders whose sellers are s1 and s2, both bought by b."""
    await db(make_order)(buyer_id="b", seller_id="s1")
    await db(make_order)(buyer_id="b", seller_id="s2")


def bulk_sellers(count: int) -> list[str]:
    ids = [f"bulk-seller-{i:03d}" for i in range(count)]
    Order.objects.bulk_create(
        Order(
            order_id=f"BULK{i:04d}",
            buyer_id="b",
            seller_id=seller_id,
            supplier_name="Supplier",
            item_title="Item",
            amount=Decimal("1.00"),
            status=OrderStatus.AWAITING_PAYMENT,
            ordered_at=timezone.now() - timedelta(hours=1),
        )
        for i, seller_id in enumerate(ids)
    )
    return ids


async def changes(socket: TestSocket, *, timeout: float = SETTLE_S) -> list[dict]:
    """Every presence.changed that arrives within ``timeout`` (to show that none does)."""
    frames = []
    while True:
        try:
            frames.append(await socket.next_frame("presence.changed", timeout=timeout))
        except TimeoutError:
            return frames


async def expect_changes(socket: TestSocket, count: int, *, timeout: float = 5.0) -> list[dict]:
    """The next ``count`` presence.changed frames, and then no other for a while."""
    frames = [await socket.next_frame("presence.changed", timeout=timeout) for _ in range(count)]
    extra = await changes(socket, timeout=QUIET_S)
    assert extra == [], f"more than {count} presence.changed: {extra}"
    return frames


def redis_keys(pattern: str) -> list[str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=f"{settings.REDIS_PREFIX}:{pattern}"))
    finally:
        client.close()


async def test_subscribe_answers_a_snapshot_and_pushes_the_first_connection(sellers):
    buyer = await TestSocket.open("b")
    data = await buyer.request("presence.subscribe", seller_ids=["s1", "s2"])
    grey = {"status": "offline", "color": "grey", "last_seen": None, "typical_reply_s": None}
    assert data == {"sellers": {"s1": grey, "s2": grey}}
    seller = await TestSocket.open("s1")
    pushed = await buyer.next_frame("presence.changed")
    assert pushed == {  # protocol 2: typical_reply_s is the snapshot's, not the push's
        "type": "presence.changed",
        "seller_id": "s1",
        "status": "online",
        "color": "orange",
        "last_seen": None,
    }
    again = await buyer.request("presence.subscribe", seller_ids=["s1"])
    assert again["sellers"]["s1"]["color"] == "orange"
    await seller.close()
    await buyer.close()


async def test_two_tabs_one_closes_stays_online_both_close_goes_grey_once_after_the_grace(sellers):
    buyer = await TestSocket.open("b")
    await buyer.request("presence.subscribe", seller_ids=["s1"])
    tab1 = await TestSocket.open("s1")
    tab2 = await TestSocket.open("s1")
    assert [f["status"] for f in await expect_changes(buyer, 1)] == ["online"]
    await tab1.close()
    assert await changes(buyer) == []  # past the grace: still orange, nothing pushed
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["color"] == "orange"
    await tab2.close()
    pushed = await expect_changes(buyer, 1)
    assert [(f["status"], f["color"]) for f in pushed] == [("offline", "grey")]
    assert pushed[0]["last_seen"] is not None
    snapshot = await buyer.request("presence.subscribe", seller_ids=["s1"])
    assert snapshot["sellers"]["s1"]["last_seen"] == pushed[0]["last_seen"]
    await buyer.close()


async def test_a_reload_within_the_grace_pushes_nothing(sellers, chat):
    chat(PRESENCE_GRACE_S=1.0)
    seller = await TestSocket.open("s1")
    buyer = await TestSocket.open("b")
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["status"] == "online"
    await seller.close()
    await asyncio.sleep(0.3)  # the page reloads: well inside the grace
    seller = await TestSocket.open("s1")
    assert await changes(buyer, timeout=1.5) == []  # the grace's end came and went
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["status"] == "online"
    await seller.close()
    await buyer.close()


async def test_subscribe_to_200_sellers_answers_all_in_one_reply():
    ids = await db(bulk_sellers)(200)
    online = await TestSocket.open(ids[7])
    buyer = await TestSocket.open("b")
    data = await buyer.request("presence.subscribe", seller_ids=ids)
    assert list(data["sellers"]) == ids
    assert {i for i, s in data["sellers"].items() if s["color"] == "orange"} == {ids[7]}
    await online.close()
    assert [f["seller_id"] for f in await expect_changes(buyer, 1)] == [ids[7]]
    await buyer.close()


async def test_subscribing_another_page_adds_to_it_and_unsubscribe_stops_pushes(sellers):
    buyer = await TestSocket.open("b")
    await buyer.request("presence.subscribe", seller_ids=["s1"])
    await buyer.request("presence.subscribe", seller_ids=["s2"])  # the next page
    s1 = await TestSocket.open("s1")
    s2 = await TestSocket.open("s2")
    assert sorted(f["seller_id"] for f in await expect_changes(buyer, 2)) == ["s1", "s2"]
    assert await buyer.request("presence.unsubscribe", seller_ids=["s1"]) == {}
    await s1.close()
    await s2.close()
    assert [f["seller_id"] for f in await expect_changes(buyer, 1)] == ["s2"]
    await buyer.close()


async def test_every_subscriber_gets_each_change_once_and_others_nothing(sellers):
    watchers = [await TestSocket.open("b"), await TestSocket.open("b"), await TestSocket.open("w")]
    for watcher in watchers[:2]:
        await watcher.request("presence.subscribe", seller_ids=["s1"])
    await watchers[2].request("presence.subscribe", seller_ids=["s2"])
    seller = await TestSocket.open("s1")
    await seller.close()
    for watcher in watchers[:2]:
        assert [f["status"] for f in await expect_changes(watcher, 2)] == ["online", "offline"]
    assert await changes(watchers[2], timeout=0.1) == []
    for watcher in watchers:
        await watcher.close()


async def test_a_push_not_newer_than_what_the_socket_shows_is_dropped(sellers):
    seller = await TestSocket.open("s1")
    buyer = await TestSocket.open("b")
    await buyer.request("presence.subscribe", seller_ids=["s1"])  # online
    ((shown, _),) = (await get_presence_store().presence_get(["s1"])).values()
    stale = {"status": "offline", "color": "grey", "last_seen": "2026-01-01T00:00:00.000Z"}

    def push(version: int) -> list:
        return fanout.presence_changed(seller_id="s1", version=version, wire=stale)

    # what a delayed or repeated push from another process looks like
    await fanout.publish(push(shown.version))
    await fanout.publish(push(shown.version - 1))
    assert await changes(buyer, timeout=0.3) == []
    await fanout.publish(push(shown.version + 1))
    assert [f["last_seen"] for f in await expect_changes(buyer, 1)] == [stale["last_seen"]]
    await seller.close()
    await buyer.close()


async def test_a_non_sellers_id_reveals_nothing(sellers):
    await db(make_order)(buyer_id="just-a-buyer", seller_id="s1")
    shopper = await TestSocket.open("just-a-buyer")  # online, but sells nothing
    buyer = await TestSocket.open("b")
    data = await buyer.request("presence.subscribe", seller_ids=["just-a-buyer", "no-such-user"])
    hidden = {"status": "offline", "color": "grey", "last_seen": None, "typical_reply_s": None}
    assert data == {"sellers": {"just-a-buyer": hidden, "no-such-user": hidden}}
    await shopper.close()
    shopper = await TestSocket.open("just-a-buyer")
    await shopper.close()
    assert await changes(buyer) == []
    assert redis_keys("asgi:group:presence.just-a-buyer") == []
    await buyer.close()


@pytest.mark.parametrize(
    "seller_ids",
    ["s1", {"s1": True}, None, [f"s{i}" for i in range(201)], ["s1", 7], [["s1"]], ["bad id!"], [""], ["x" * 65]],
)
async def test_bad_seller_ids_get_bad_request_and_the_socket_stays_open(sellers, seller_ids):
    buyer = await TestSocket.open("b")
    fields = {} if seller_ids is None else {"seller_ids": seller_ids}
    for frame_type in ("presence.subscribe", "presence.unsubscribe"):
        reply = await buyer.request_frame(frame_type, **fields)
        assert (reply["ok"], reply["error"]["code"], reply["error"]["field"]) == (False, "bad_request", "seller_ids")
    assert await buyer.request("ping") == {}
    await buyer.close()


async def test_no_keys_or_group_members_are_left_once_everyone_disconnected(sellers):
    buyer = await TestSocket.open("b")
    other = await TestSocket.open("w")
    await buyer.request("presence.subscribe", seller_ids=["s1", "s2"])
    await other.request("presence.subscribe", seller_ids=["s1"])
    s1, s2 = await TestSocket.open("s1"), await TestSocket.open("s2")
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert topic_residue(client, "p.*") != []  # the check below can fail
    for socket in (buyer, other, s1, s2):
        await socket.close()
    await asyncio.sleep(SETTLE_S)
    assert topic_residue(client) == []
    assert redis_keys("conn:*") == []
    assert redis_keys("presence-due") == []
    statuses = redis_keys("presence:*")
    assert statuses and all(client.pttl(k) > 0 for k in statuses)  # last_seen, expiring
    assert all(client.hget(k, "on") == b"0" for k in statuses)
    client.close()


async def register_doomed_connection(user_id: str) -> None:
    """A connection of a process that then dies: registered with a short TTL, never
    touched nor closed (everyone else keeps the normal TTL)."""
    opened = await get_presence_store().connection_open(user_id, "killed-process-conn", ttl_s=CRASH_TTL_S)
    assert opened.came_online is not None


async def test_a_crashed_connection_is_swept_offline_once_by_concurrent_sweepers(sellers):
    await register_doomed_connection("s1")
    buyer = await TestSocket.open("b")
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["status"] == "online"
    await asyncio.sleep(CRASH_TTL_S + 0.1)
    flips = await asyncio.gather(presence.presence_sweep(), presence.presence_sweep(), presence.presence_sweep())
    assert sorted(flips) == [0, 0, 1]
    assert [f["status"] for f in await expect_changes(buyer, 1)] == ["offline"]
    assert redis_keys("conn:s1") == []
    await buyer.close()


async def test_a_snapshot_never_shows_a_crashed_seller_orange(sellers):
    await register_doomed_connection("s1")
    watcher = await TestSocket.open("w")
    assert (await watcher.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["status"] == "online"
    await asyncio.sleep(CRASH_TTL_S + 0.1)  # expired; no sweep has run yet
    buyer = await TestSocket.open("b")
    data = await buyer.request("presence.subscribe", seller_ids=["s1"])
    assert data["sellers"]["s1"]["color"] == "grey" and data["sellers"]["s1"]["last_seen"] is not None
    # the read made the transition, so it was pushed, once, and the sweep finds nothing
    assert [f["status"] for f in await expect_changes(watcher, 1)] == ["offline"]
    assert await presence.presence_sweep() == 0
    await buyer.close()
    await watcher.close()


async def test_the_supervisor_of_a_live_process_sweeps_crashed_sellers(sellers, chat):
    chat(SUPERVISOR_TICK_S=0.05, PRESENCE_SWEEP_S=0.1)
    await register_doomed_connection("s1")
    buyer = await TestSocket.open("b")  # its process's supervisor now ticks
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["status"] == "online"
    pushed = await expect_changes(buyer, 1, timeout=CRASH_TTL_S + 5)
    assert [f["status"] for f in pushed] == ["offline"]
    await buyer.close()


async def test_a_live_seller_whose_entries_redis_lost_is_registered_again(sellers, chat):
    chat(SUPERVISOR_TICK_S=0.05, CONNECTION_TTL_S=0.6)
    seller = await TestSocket.open("s1")
    buyer = await TestSocket.open("b")
    assert (await buyer.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["color"] == "orange"
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in redis_keys("conn:s1") + redis_keys("presence*"):
        client.delete(key)  # what a Redis restart does to the store
    client.close()
    other = await TestSocket.open("w")
    assert (await other.request("presence.subscribe", seller_ids=["s1"]))["sellers"]["s1"]["color"] == "grey"
    # the seller's socket is alive: its supervisor's next touch puts it back, and the new
    # version is newer than what the buyer showed before the loss
    assert [f["color"] for f in await expect_changes(other, 1)] == ["orange"]
    assert [f["color"] for f in await expect_changes(buyer, 1)] == ["orange"]
    assert redis_keys("conn:s1") != []
    await seller.close()
    await buyer.close()
    await other.close()


async def test_subscriptions_per_socket_are_capped(chat):
    chat(PRESENCE_MAX_SUBSCRIPTIONS=200)
    ids = await db(bulk_sellers)(200)
    buyer = await TestSocket.open("b")
    await buyer.request("presence.subscribe", seller_ids=ids)
    reply = await buyer.request_frame("presence.subscribe", seller_ids=["one-more"])
    assert reply["error"]["code"] == "bad_request"
    await buyer.request("presence.unsubscribe", seller_ids=ids[:1])
    assert (await buyer.request("presence.subscribe", seller_ids=["one-more"]))["sellers"]["one-more"][
        "color"
    ] == "grey"
    await buyer.close()
