"""Routes of the service's own pages and of its static files (chat_service.transport.http.pages)."""

from django.urls import path, re_path

from chat_service.transport.http import pages

urlpatterns = [
    path("", pages.home, name="page-home"),
    path("login/", pages.login, name="page-login"),
    path("logout/", pages.logout, name="page-logout"),
    path("orders/", pages.orders, name="page-orders"),
    path("console/", pages.console, name="page-console"),
    path("embed/", pages.embed_example, name="page-embed"),
    re_path(r"^static/(?P<path>.+)\Z", pages.static_file, name="static-file"),
]
