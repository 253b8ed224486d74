"""The bridge's HTTP endpoints (included by the project's root urls)."""

from django.urls import path

from orders_bridge import webhook

urlpatterns = [
    path("bridge/events/", webhook.bridge_events, name="bridge-events"),
]
