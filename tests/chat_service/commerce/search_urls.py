"""The root routes plus order search's, for tests of chat_service.transport.http.orders (until the root
URLconf includes chat_service.transport.http.order_urls)."""

from django.urls import include, path

urlpatterns = [
    path("", include("chat_service.urls")),
    path("", include("chat_service.transport.http.order_urls")),
]
