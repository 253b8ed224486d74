"""Settings, driven by environment variables (see docs/operations.md).

With nothing configured the service runs on an embedded default: a SQLite file, the
in-memory broker, one process, DEBUG on. As soon as DATABASE_URL or REDIS_URL is
set the deployment is treated as real: DEBUG defaults to off, and the process refuses to
start while DEBUG is off and a secret still has its development default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from chat_service.machinery.env import ConfigError, database_from_url, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")) or "")

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = DATABASE_URL is None and REDIS_URL is None

DEBUG = env_bool("DEBUG", EMBEDDED)
# Run the worker's jobs inside the web process (one process, in-memory layer: the demo).
EMBEDDED_WORKER = env_bool("EMBEDDED_WORKER", EMBEDDED)

_DEV_SECRET_KEY = "dev-only-secret-key-not-for-production-use-0000"
_DEV_TOKEN_SECRET = "dev-only-chat-token-secret-not-for-production"
_DEV_BRIDGE_SECRET = "dev-only-bridge-secret-not-for-production-0000"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY) or _DEV_SECRET_KEY
CHAT_TOKEN_SECRET = env_str("CHAT_TOKEN_SECRET", _DEV_TOKEN_SECRET) or _DEV_TOKEN_SECRET
# The order system's shared secret: signs webhooks in and requests out (orders_bridge).
# BRIDGE_SECRET_PREVIOUS is also accepted on webhooks while the secret is rotated.
BRIDGE: dict[str, Any] = {
    "SECRET": env_str("BRIDGE_SECRET", _DEV_BRIDGE_SECRET) or _DEV_BRIDGE_SECRET,
    "SECRET_PREVIOUS": env_str("BRIDGE_SECRET_PREVIOUS"),
    "WINDOW_S": env_int("BRIDGE_WINDOW_S", 300, minimum=1),
}

if not DEBUG:
    unsafe = [
        name
        for name, value, dev in (
            ("SECRET_KEY", SECRET_KEY, _DEV_SECRET_KEY),
            ("CHAT_TOKEN_SECRET", CHAT_TOKEN_SECRET, _DEV_TOKEN_SECRET),
            ("BRIDGE_SECRET", BRIDGE["SECRET"], _DEV_BRIDGE_SECRET),
        )
        if value == dev or len(value) < 32
    ]
    if unsafe:
        raise ConfigError(
            "DEBUG is off but these secrets are unset, the development default, or shorter "
            f"than 32 characters: {', '.join(unsafe)}. Set them, or set DEBUG=1 for local use."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Origins (besides ALLOWED_HOSTS) whose pages may open the WebSocket, e.g. the
# marketplace pages that embed the widget: "https://shop.example.com".
WS_ALLOWED_ORIGINS = env_list("WS_ALLOWED_ORIGINS", [])
CSRF_TRUSTED_ORIGINS = [o for o in WS_ALLOWED_ORIGINS if "://" in o]
# The same origins may call the JSON API cross-origin with a bearer token (chat_service.transport.http.api).
CORS_ALLOWED_ORIGINS = CSRF_TRUSTED_ORIGINS
# The demo's pick-a-user login page (chat_service.transport.http.pages); never for real marketplaces.
DEMO_LOGIN = env_bool("CHAT_DEMO_LOGIN", DEBUG)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # wiring (commands, static files, templates)
    "chat_service",
    # domains
    "chat_service.threads",
    "chat_service.threads.notifications",
    "chat_service.commerce",
    "presence",
    # adapters
    "orders_bridge",
    "chat_service.notification_channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chat_service.urls"
ASGI_APPLICATION = "chat_service.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
if DATABASE_URL:
    _db = database_from_url(DATABASE_URL)
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "chat.sqlite3")}

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE avoids "database is locked" when a read transaction upgrades to a write.
    _db["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
else:
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
    # A connection that died with a PostgreSQL restart is replaced before it is used.
    _db["CONN_HEALTH_CHECKS"] = True
# Named explicitly: Channels' live-server tests otherwise guess a wrong name (channels#2176).
_db["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", f"test_{_db['NAME']}".replace("/", "_"))}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broadcast (chat_service.machinery.broadcast) ---------------------------------------------------------
REDIS_PREFIX = env_str("REDIS_PREFIX", "chat") or "chat"
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 2000, minimum=10)
# The Redis connection options of the broker (redis-py keyword arguments, in the host
# list format of channels-redis; one entry per Redis server the topics are spread over).
_BROADCAST_HOST = {
    "address": REDIS_URL,
    # redis-py 8 defaults to a 5 s socket timeout, which would break a quiet subscribed
    # connection (channels_redis#422); the broker has its own reconnects.
    "socket_timeout": None,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    # redis-py's async pool refuses past 100 connections by default; a connect burst
    # needs more (see docs/operations.md).
    "max_connections": REDIS_MAX_CONNECTIONS,
    "health_check_interval": 30,
    # After a Redis restart every pooled connection is dead until used; retry a command
    # once on a new connection (tests/resilience/test_faults_redis.py).
    "retry_on_error": [RedisConnectionError],
}
BROADCAST = {"HOSTS": [_BROADCAST_HOST] if REDIS_URL else []}

# --- Chat behaviour ---------------------------------------------------------------------
CHAT: dict[str, Any] = {
    "HEARTBEAT_S": env_int("CHAT_HEARTBEAT_S", 25, minimum=1),
    "MAX_BODY_CHARS": env_int("CHAT_MAX_BODY_CHARS", 4000, minimum=1),
    "MAX_FRAME_BYTES": env_int("CHAT_MAX_FRAME_BYTES", 65536, minimum=1024),
    "SEND_RATE_COUNT": env_int("CHAT_SEND_RATE_COUNT", 20, minimum=1),
    "SEND_RATE_WINDOW_S": env_float("CHAT_SEND_RATE_WINDOW_S", 10.0, minimum=0.1),
    "MAX_CONNECTIONS_PER_USER": env_int("CHAT_MAX_CONNECTIONS_PER_USER", 20, minimum=1),
    "TYPING_THROTTLE_S": env_float("CHAT_TYPING_THROTTLE_S", 3.0, minimum=0.0),
    "JOIN_MAX_EVENTS": env_int("CHAT_JOIN_MAX_EVENTS", 500, minimum=1),
    "PAGE_MAX": 200,
    # Live events one socket's thread holds back while it is busy (joining, catching up,
    # answering its own message); past it they are dropped and read from PostgreSQL.
    "STREAM_QUEUE": env_int("CHAT_STREAM_QUEUE", 1000, minimum=10),
    # A connection entry outlives a crashed process by at most this long. With the
    # presence sweep it bounds how long a killed process's sellers stay orange:
    # CONNECTION_TTL_S + PRESENCE_SWEEP_S (+ one supervisor tick) = 45 + 10 + 5 <= 60 s.
    "CONNECTION_TTL_S": env_int("CHAT_CONNECTION_TTL_S", 45, minimum=5),
    "SUPERVISOR_TICK_S": env_float("CHAT_SUPERVISOR_TICK_S", 5.0, minimum=0.05),
    # How often each process checks that its sockets are not behind their joined threads
    # (pub/sub may drop the last events of a burst; see Supervisor._sync_threads).
    "SYNC_S": env_float("CHAT_SYNC_S", 5.0, minimum=0.05),
    # Seller presence (presence/): a seller goes grey only after this long without any
    # connection, so a page reload pushes nothing.
    "PRESENCE_GRACE_S": env_float("CHAT_PRESENCE_GRACE_S", 5.0, minimum=0.0),
    # How often each web process sweeps sellers whose connection entries expired.
    "PRESENCE_SWEEP_S": env_float("CHAT_PRESENCE_SWEEP_S", 10.0, minimum=0.05),
    # How long an offline seller's last_seen is kept.
    "PRESENCE_LAST_SEEN_TTL_S": env_int("CHAT_PRESENCE_LAST_SEEN_TTL_S", 30 * 86400, minimum=60),
    # Cache of "is a seller" and of typical reply times, per process.
    "PRESENCE_CACHE_S": env_int("CHAT_PRESENCE_CACHE_S", 600, minimum=0),
    # Seller ids one socket may be subscribed to at once (pages add up until unsubscribed).
    "PRESENCE_MAX_SUBSCRIPTIONS": env_int("CHAT_PRESENCE_MAX_SUBSCRIPTIONS", 1000, minimum=200),
    # PostgreSQL connections of each web process's hot path (chat_service.machinery.pgpool): every
    # message, join, connect runs one statement on one of them. Size max_connections for
    # processes x (DB_POOL_SIZE + 2) (the ORM's thread and the HTTP requests' own).
    "DB_POOL_SIZE": env_int("CHAT_DB_POOL_SIZE", 4, minimum=1),
    "DB_POOL_TIMEOUT_S": env_float("CHAT_DB_POOL_TIMEOUT_S", 10.0, minimum=0.1),
}

# --- Static files, sessions, i18n -----------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG and env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# TLS ends at the proxy in front of Daphne (the Procfile runs it with --proxy-headers), which
# says so in X-Forwarded-Proto. A deployment that serves only HTTPS sets the redirect and
# HSTS here (docs/operations.md; `manage.py check --deploy` in CI runs with them). Off by
# default: the demo, the tests and the bench speak plain HTTP on loopback.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the load balancer's check speaks plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = False
# Preloading is the domain owner's choice for the whole domain, and near irreversible.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Orders bridge (orders_bridge/) -----------------------------------------------------------
ORDERS: dict[str, Any] = {
    # A buyer may open a dispute this long after the order completed (unless feedback was left).
    "DISPUTE_PROTECTION_DAYS": env_int("ORDERS_DISPUTE_PROTECTION_DAYS", 15, minimum=0),
    # The seller must answer an open dispute within this; then the worker escalates it.
    "DISPUTE_RESPONSE_DAYS": env_int("ORDERS_DISPUTE_RESPONSE_DAYS", 5, minimum=1),
}

# --- Notifications (chat_service/threads/notifications/) -----------------------------------------------
NOTIFY: dict[str, Any] = {
    # The marketplace's push service; unset: no push channel (e-mail only).
    "WEBHOOK_URL": env_str("NOTIFY_WEBHOOK_URL"),
    # Signs the push webhook (X-Bridge-Signature); unset: BRIDGE_SECRET.
    "SECRET": env_str("NOTIFY_SECRET"),
    # Ordinary messages wait this long and go out as one digest per thread.
    "DIGEST_DELAY_S": env_float("NOTIFY_DIGEST_DELAY_S", 120.0, minimum=0.0),
    # Deadline reminders: this long before an offer expires / a dispute answer is due.
    "OFFER_REMINDER_LEAD_S": env_float("NOTIFY_OFFER_REMINDER_LEAD_S", 6 * 3600.0, minimum=0.0),
    "DISPUTE_REMINDER_LEAD_S": env_float("NOTIFY_DISPUTE_REMINDER_LEAD_S", 6 * 3600.0, minimum=0.0),
    "TIMEOUT_S": env_float("NOTIFY_TIMEOUT_S", 5.0, minimum=0.1),
    "LEASE_S": env_float("NOTIFY_LEASE_S", 60.0, minimum=0.5),
    "MAX_ATTEMPTS": env_int("NOTIFY_MAX_ATTEMPTS", 12, minimum=1),
    "BACKOFF_BASE_S": env_float("NOTIFY_BACKOFF_BASE_S", 1.0, minimum=0.001),
    "BACKOFF_MAX_S": env_float("NOTIFY_BACKOFF_MAX_S", 3600.0, minimum=0.001),
    "BATCH": env_int("NOTIFY_BATCH", 50, minimum=1),
    "EMAIL_FROM": env_str("NOTIFY_EMAIL_FROM", "Order chat <notifications@localhost>"),
}
if NOTIFY["SECRET"] is not None and len(NOTIFY["SECRET"]) < 32:
    raise ConfigError("NOTIFY_SECRET must be at least 32 characters.")
# E-mail goes through Django's mail settings; the embedded default prints it to stdout.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
