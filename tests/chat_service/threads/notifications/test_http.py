"""The preferences and mute endpoints (Bearer tokens, as the marketplace's apps call them)."""

from __future__ import annotations

import pytest

from chat_service.threads.notifications.models import ThreadMute
from tests.factories import make_order, token_for

pytestmark = pytest.mark.django_db


def auth(user_id: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_for(user_id)}"}


def test_preferences_are_read_and_changed(client):
    order = make_order(buyer_id="ann", seller_id="lumen")
    answer = client.get("/api/notifications/preferences/", **auth("ann"))
    assert answer.status_code == 200
    assert answer.json() == {"email": True, "push": True, "email_address_known": False, "muted_order_ids": []}

    answer = client.put(
        "/api/notifications/preferences/", {"email": False}, content_type="application/json", **auth("ann")
    )
    assert answer.status_code == 200 and answer.json()["email"] is False and answer.json()["push"] is True
    client.post(f"/api/threads/{order.pk}/mute/", {"muted": True}, content_type="application/json", **auth("ann"))
    assert client.get("/api/notifications/preferences/", **auth("ann")).json() == {
        "email": False,
        "push": True,
        "email_address_known": False,
        "muted_order_ids": [order.pk],
    }


def test_preferences_refuse_a_non_boolean_and_anonymous_callers(client):
    answer = client.put(
        "/api/notifications/preferences/", {"push": "off"}, content_type="application/json", **auth("ann")
    )
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "push"
    assert client.get("/api/notifications/preferences/").status_code == 401


def test_a_thread_is_muted_and_unmuted_by_its_participant_only(client):
    order = make_order(buyer_id="ann", seller_id="lumen")
    url = f"/api/threads/{order.pk}/mute/"
    answer = client.post(url, {"muted": True}, content_type="application/json", **auth("ann"))
    assert answer.status_code == 200 and answer.json() == {"order_id": order.pk, "muted": True}
    assert ThreadMute.objects.filter(user_id="ann", thread_id=order.pk).exists()
    answer = client.post(url, {"muted": False}, content_type="application/json", **auth("ann"))
    assert answer.json()["muted"] is False and not ThreadMute.objects.exists()

    stranger = client.post(url, {"muted": True}, content_type="application/json", **auth("mallory"))
    assert stranger.status_code == 404 and not ThreadMute.objects.exists()
    assert client.post(url, {}, content_type="application/json", **auth("ann")).status_code == 400


def test_the_openapi_paths_cover_every_notification_route():
    from chat_service.transport.http import notification_urls
    from chat_service.transport.http.openapi_notifications import PATHS

    routed = {"/" + str(p.pattern).replace("<str:order_id>", "{order_id}") for p in notification_urls.urlpatterns}
    assert routed == set(PATHS)
