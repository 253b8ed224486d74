from django.contrib import admin
from django.urls import include, path

from chat_service.transport.http import threads

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("orders_bridge.urls")),
    path("", include("chat_service.transport.http.order_urls")),
    path("", include("chat_service.transport.http.notification_urls")),
    path("api/threads/", threads.threads_list, name="threads-list"),
    path("api/threads/<str:order_id>/events/", threads.thread_events, name="thread-events"),
    path("api/threads/<str:order_id>/messages/", threads.thread_messages, name="thread-messages"),
    path("api/threads/<str:order_id>/read/", threads.thread_read, name="thread-read"),
    path("api/presence/", threads.presence_list, name="presence-list"),
    path("api/schema/", threads.schema, name="schema"),
    path("healthz", threads.healthz, name="healthz"),
    path("", include("chat_service.transport.http.page_urls")),
]
