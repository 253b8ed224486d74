"""The thread HTTP API: happy paths, each error code, non-participants, sessions + CSRF."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import Client

from chat_service.threads import services
from chat_service.threads.models import Event
from chat_service.transport.http.api import WireEncoder
from chat_service.transport.identity import SESSION_KEY
from tests.factories import make_order, thread_of, token_for

pytestmark = pytest.mark.django_db(transaction=True)


def api(user, *, client=None):
    client = client or Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"} if user else {}

    class Caller:
        def get(self, path, **params):
            return client.get(path, params, **headers)

        def post(self, path, body, raw=False):
            data = body if raw else json.dumps(body)
            return client.post(path, data, content_type="application/json", **headers)

    return Caller()


def error_code(response):
    return response.json()["error"]["code"]


@pytest.fixture
def order():
    return make_order(buyer_id="b", seller_id="s")


def say(user, order, n, prefix="m"):
    for i in range(n):
        services.message_send(user_id=user, order_id=order.pk, client_msg_id=f"{prefix}{i}", body=f"{prefix}{i}")


def test_send_over_http_is_idempotent_and_201_then_200(order):
    first = api("b").post(f"/api/threads/{order.pk}/messages/", {"client_msg_id": "c1", "body": "hello"})
    assert first.status_code == 201 and first.json()["event"]["seq"] == 1
    again = api("b").post(f"/api/threads/{order.pk}/messages/", {"client_msg_id": "c1", "body": "hello"})
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    assert Event.objects.filter(thread_id=order.pk).count() == 1


def test_thread_list_has_unread_counts_and_last_event(order):
    other = make_order(buyer_id="b", seller_id="s2")
    say("s", order, 2)
    response = api("b").get("/api/threads/")
    assert response.status_code == 200
    body = response.json()
    assert body["unread_total"] == 2
    by_id = {t["order"]["order_id"]: t for t in body["threads"]}
    assert by_id[order.pk]["unread"] == 2 and by_id[order.pk]["last_event"]["body"] == "m1"
    assert by_id[other.pk]["unread"] == 0 and by_id[other.pk]["last_event"] is None
    assert body["threads"][0]["order"]["order_id"] == order.pk  # most recent activity first
    unread_only = api("b").get("/api/threads/", unread="1").json()["threads"]
    assert [t["order"]["order_id"] for t in unread_only] == [order.pk]


def test_events_page_backwards_and_forwards_with_cursors(order):
    say("b", order, 7)
    caller = api("s")
    newest = caller.get(f"/api/threads/{order.pk}/events/", limit=3).json()
    assert [e["seq"] for e in newest["events"]] == [5, 6, 7] and newest["has_more"] is True
    older = caller.get(f"/api/threads/{order.pk}/events/", before_seq=5, limit=3).json()
    assert [e["seq"] for e in older["events"]] == [2, 3, 4] and older["has_more"] is True
    oldest = caller.get(f"/api/threads/{order.pk}/events/", before_seq=2, limit=3).json()
    assert [e["seq"] for e in oldest["events"]] == [1] and oldest["has_more"] is False
    after = caller.get(f"/api/threads/{order.pk}/events/", after_seq=4, limit=2).json()
    assert [e["seq"] for e in after["events"]] == [5, 6] and after["has_more"] is True
    assert newest["last_seq"] == 7 and newest["read_seq"] == {"buyer": 7, "seller": 0}


def test_mark_read_over_http(order):
    say("b", order, 3)
    response = api("s").post(f"/api/threads/{order.pk}/read/", {"seq": 2})
    assert response.status_code == 200 and response.json() == {"read_seq": 2, "unread": 1, "unread_total": 1}
    assert thread_of(order).seller_read_seq == 2


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/threads/{id}/events/", None),
        ("post", "/api/threads/{id}/messages/", {"client_msg_id": "x", "body": "intrude"}),
        ("post", "/api/threads/{id}/read/", {"seq": 1}),
    ],
)
@pytest.mark.parametrize("stranger", ["stranger", "b2", "s2"])
def test_non_participants_get_404_on_every_thread_endpoint(order, method, path, body, stranger):
    make_order(buyer_id="b2", seller_id="s2")
    say("b", order, 1)
    caller = api(stranger)
    url = path.format(id=order.pk)
    response = caller.get(url) if method == "get" else caller.post(url, body)
    assert response.status_code == 404 and error_code(response) == "not_found"
    unknown = caller.get("/api/threads/NOPE/events/") if method == "get" else caller.post(path.format(id="NOPE"), body)
    assert unknown.json() == response.json()  # existence does not leak
    assert Event.objects.filter(thread_id=order.pk).count() == 1 and thread_of(order).seller_read_seq == 0


def test_the_thread_list_shows_only_the_callers_threads(order):
    make_order(buyer_id="b2", seller_id="s2")
    ids = [t["order"]["order_id"] for t in api("stranger").get("/api/threads/").json()["threads"]]
    assert ids == []


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "unauthorized"),
        ({"HTTP_AUTHORIZATION": "Bearer nope"}, "unauthorized"),
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, "unauthorized"),
        ({"HTTP_AUTHORIZATION": f"Bearer {token_for('b', ttl_s=-5)}"}, "unauthorized"),
    ],
)
def test_missing_bad_or_expired_tokens_get_401(order, headers, code):
    response = Client().get("/api/threads/", **headers)
    assert response.status_code == 401 and error_code(response) == code


@pytest.mark.parametrize(
    "body, status, code",
    [
        ("{not json", 400, "bad_request"),
        ("[]", 400, "bad_request"),
        (json.dumps({"body": "x"}), 400, "bad_request"),
        (json.dumps({"client_msg_id": "c", "body": 5}), 400, "bad_request"),
        (json.dumps({"client_msg_id": "c", "body": ""}), 400, "bad_request"),
        (json.dumps({"client_msg_id": "c", "body": "x" * 4001}), 413, "too_large"),
        (json.dumps({"client_msg_id": "c", "body": "x" * 70000}), 413, "too_large"),
    ],
)
def test_bad_message_bodies_get_a_4xx_code_and_store_nothing(order, body, status, code):
    response = api("b").post(f"/api/threads/{order.pk}/messages/", body, raw=True)
    assert (response.status_code, error_code(response)) == (status, code)
    assert Event.objects.filter(thread_id=order.pk).count() == 0


@pytest.mark.parametrize(
    "params",
    [{"after_seq": "x"}, {"limit": "0"}, {"limit": "201"}, {"after_seq": "1", "before_seq": "3"}, {"before_seq": "-1"}],
)
def test_bad_paging_parameters_get_400(order, params):
    response = api("b").get(f"/api/threads/{order.pk}/events/", **params)
    assert response.status_code == 400 and error_code(response) == "bad_request"


def test_http_send_is_rate_limited_with_retry_after(order, settings):
    settings.CHAT = {**settings.CHAT, "SEND_RATE_COUNT": 2, "SEND_RATE_WINDOW_S": 60}
    caller = api("b")
    for i in range(2):
        assert (
            caller.post(f"/api/threads/{order.pk}/messages/", {"client_msg_id": f"c{i}", "body": "x"}).status_code
            == 201
        )
    response = caller.post(f"/api/threads/{order.pk}/messages/", {"client_msg_id": "c9", "body": "x"})
    assert response.status_code == 429 and error_code(response) == "rate_limited"
    assert int(response["Retry-After"]) >= 1


def test_wrong_method_gets_405_json(order):
    response = api("b").get(f"/api/threads/{order.pk}/messages/")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def test_session_callers_need_the_csrf_token_for_writes(order):
    client = Client(enforce_csrf_checks=True)
    session = client.session
    session[SESSION_KEY] = {"id": "b", "name": "Ann"}
    session.save()
    client.cookies["sessionid"] = session.session_key
    assert client.get("/api/threads/").status_code == 200  # reads need no token
    url = f"/api/threads/{order.pk}/messages/"
    refused = client.post(url, json.dumps({"client_msg_id": "c", "body": "x"}), content_type="application/json")
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    client.get("/api/threads/")  # any page sets no cookie by itself: get one explicitly
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    accepted = client.post(
        url,
        json.dumps({"client_msg_id": "c", "body": "x"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret),
    )
    assert accepted.status_code == 201


def test_openapi_document_lists_every_api_route():
    from django.urls import get_resolver

    schema = Client().get("/api/schema/").json()
    assert schema["openapi"].startswith("3.")
    routed = {
        "/" + str(p.pattern).replace("<str:order_id>", "{order_id}")
        for p in get_resolver().url_patterns
        if str(p.pattern).startswith("api/") and str(p.pattern) != "api/schema/"
    }
    assert routed <= set(schema["paths"]), routed - set(schema["paths"])


def test_healthz_reports_database_and_redis():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True, "checks": {"database": "ok", "redis": "ok"}}


def test_allowed_origins_may_call_the_api_cross_origin_with_a_bearer_token(order, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]
    url = f"/api/threads/{order.pk}/events/"
    preflight = Client().options(url, HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Authorization" in preflight["Access-Control-Allow-Headers"]
    response = Client().get(url, HTTP_ORIGIN="https://shop.example", HTTP_AUTHORIZATION=f"Bearer {token_for('b')}")
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Access-Control-Allow-Credentials" not in response
    foreign = Client().get(url, HTTP_ORIGIN="https://evil.example", HTTP_AUTHORIZATION=f"Bearer {token_for('b')}")
    assert "Access-Control-Allow-Origin" not in foreign and foreign["Vary"] == "Origin"


def test_a_datetime_in_an_http_body_is_written_in_the_wire_timestamp_format():
    whole_second = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    elsewhere = datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    text = json.dumps({"a": whole_second, "b": elsewhere}, cls=WireEncoder)
    # Django's own encoder would write "2026-03-01T12:00:00Z" and "...13:00:00.123+01:00".
    assert json.loads(text) == {"a": "2026-03-01T12:00:00.000Z", "b": "2026-03-01T12:00:00.123Z"}


def test_the_order_in_a_thread_list_carries_its_time_in_the_wire_format():
    order = make_order()
    client = Client(headers={"Authorization": f"Bearer {token_for(order.buyer_id)}"})
    body = client.get("/api/threads/").json()
    (entry,) = [t for t in body["threads"] if t["order"]["order_id"] == order.pk]
    ordered_at = entry["order"]["ordered_at"]
    assert len(ordered_at) == len("2026-03-01T12:00:00.000Z") and ordered_at.endswith("Z"), ordered_at
