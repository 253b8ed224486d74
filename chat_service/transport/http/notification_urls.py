from django.urls import path

from chat_service.transport.http import notifications

urlpatterns = [
    path("api/notifications/preferences/", notifications.preferences, name="notification-preferences"),
    path("api/threads/<str:order_id>/mute/", notifications.thread_mute, name="thread-mute"),
]
