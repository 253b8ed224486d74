"""GET /api/presence/: the same answer as presence.subscribe, without a subscription."""

import pytest
from channels.db import database_sync_to_async as db
from django.test import AsyncClient

from tests.factories import make_order, token_for
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)


async def get(path, user="b"):
    headers = {"Authorization": f"Bearer {token_for(user)}"} if user else {}
    return await AsyncClient().get(path, headers=headers)


async def test_it_answers_like_the_subscribe_reply():
    await db(make_order)(buyer_id="b", seller_id="s1")
    await db(make_order)(buyer_id="b", seller_id="s2")
    seller = await TestSocket.open("s1")
    buyer = await TestSocket.open("b")
    over_socket = await buyer.request("presence.subscribe", seller_ids=["s1", "s2", "just-b"])
    response = await get("/api/presence/?seller_ids=s1,s2,just-b")
    assert response.status_code == 200
    assert response.json() == over_socket
    assert response.json()["sellers"]["s1"]["color"] == "orange"
    assert response.json()["sellers"]["s2"]["color"] == "grey"
    await seller.close()
    await buyer.close()


async def test_it_needs_a_signed_in_user():
    response = await get("/api/presence/?seller_ids=s1", user=None)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "query", ["", "?seller_ids=bad%20id", "?seller_ids=" + ",".join(f"s{i}" for i in range(201)), "?seller_ids=a,%00"]
)
async def test_bad_input_is_a_400(query):
    response = await get(f"/api/presence/{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
