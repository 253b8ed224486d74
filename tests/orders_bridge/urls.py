"""The project's urls plus the bridge's, until chat_service.urls includes orders_bridge.urls."""

from django.urls import include, path

urlpatterns = [
    path("", include("orders_bridge.urls")),
    path("", include("chat_service.urls")),
]
