import pytest

from tests.factories import make_order
from tests.wsclient import TestSocket

pytestmark = pytest.mark.django_db(transaction=True)


async def test_buyer_message_reaches_seller(django_db_blocker=None):
    from asgiref.sync import sync_to_async
    order = await sync_to_async(make_order)(buyer_id="b1", seller_id="s1")
    buyer = await TestSocket.open("b1")
    seller = await TestSocket.open("s1")
    await buyer.request("thread.join", order_id=order.order_id)
    await seller.request("thread.join", order_id=order.order_id)
    data = await buyer.request("message.send", order_id=order.order_id, client_msg_id="c1", body="hello")
    assert data["event"]["seq"] == 1
    frame = await seller.next_frame("thread.event")
    assert frame["event"]["body"] == "hello"
    await buyer.close(); await seller.close()
