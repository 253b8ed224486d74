from django.contrib import admin
from django.urls import include, path

from chat_service import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("orders_bridge.urls")),
    path("", include("orders_bridge.api_urls")),
    path("", include("chat_service.notifications.urls")),
    path("api/threads/", views.threads_list, name="threads-list"),
    path("api/threads/<str:order_id>/events/", views.thread_events, name="thread-events"),
    path("api/threads/<str:order_id>/messages/", views.thread_messages, name="thread-messages"),
    path("api/threads/<str:order_id>/read/", views.thread_read, name="thread-read"),
    path("api/presence/", views.presence_list, name="presence-list"),
    path("api/schema/", views.schema, name="schema"),
    path("healthz", views.healthz, name="healthz"),
    path("", include("chat_service.page_urls")),
]
