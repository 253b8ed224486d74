"""Test settings: the real stack (PostgreSQL + Redis on loopback) unless overridden.

Environment defaults are set before the service's settings module reads them, so
`pytest` alone runs against the local services; CI sets the same values explicitly.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)
os.environ.setdefault("CHAT_TOKEN_SECRET", "test-chat-token-secret-" + "y" * 32)
os.environ.setdefault("BRIDGE_SECRET", "test-bridge-secret-" + "w" * 32)
os.environ.setdefault("DEBUG", "0")
# Per run, so concurrent runs (several developers, CI) never share a test database.
os.environ.setdefault("DATABASE_TEST_NAME", f"test_chat_{os.getpid()}")
# Keys of this run never meet those of a concurrent run or of a dev server.
os.environ.setdefault("REDIS_PREFIX", f"chat-test-{os.getpid()}")
# Several suites and their daphne processes share one PostgreSQL (max_connections 100):
# two hot-path connections per process (chat_service/machinery/pgpool.py) are enough for tests.
os.environ.setdefault("CHAT_DB_POOL_SIZE", "2")

from chat_service.settings import *  # noqa: E402,F401,F403

SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

# The ORM's connections close after each use, and the hot path's pool closes with each
# test's event loop (chat_service/machinery/pgpool.py), so the test database can be dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
