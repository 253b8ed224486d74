"""The root routes plus order search's, for tests of orders_bridge.views (until the root
URLconf includes orders_bridge.api_urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("chat_service.urls")),
    path("", include("orders_bridge.api_urls")),
]
