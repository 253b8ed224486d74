"""Routes of order search, order detail and disputes (included by the root URLconf).

Kept apart from orders_bridge/urls.py (the order system's webhook) because the two are
mounted for different callers: these are the users' API under /api/."""

from django.urls import path

from chat_service.transport.http import orders

urlpatterns = [
    path("api/orders/", orders.orders_list, name="orders-list"),
    path("api/orders/counts/", orders.orders_counts, name="orders-counts"),
    path("api/orders/<str:order_id>/", orders.order_detail, name="order-detail"),
    path("api/disputes/", orders.disputes_list, name="disputes-list"),
]
