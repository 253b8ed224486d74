from django.urls import path

from chat_service.notifications import views

urlpatterns = [
    path("api/notifications/preferences/", views.preferences, name="notification-preferences"),
    path("api/threads/<str:order_id>/mute/", views.thread_mute, name="thread-mute"),
]
