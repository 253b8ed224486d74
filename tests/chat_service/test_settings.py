"""Settings come from the environment and refuse unsafe production defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_service.machinery.env import ConfigError, database_from_url

ROOT = Path(__file__).resolve().parents[2]
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k
    not in {
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "CHAT_TOKEN_SECRET",
        "BRIDGE_SECRET",
        "DEBUG",
        "DJANGO_SETTINGS_MODULE",
    }
}


def load_settings(tmp_path, **env):
    code = (
        "from django.conf import settings; settings.DEBUG; print(settings.DEBUG, "
        "settings.DATABASES['default']['ENGINE'], 'redis' if settings.BROADCAST['HOSTS'] else 'memory')"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**CLEAN_ENV, "DJANGO_SETTINGS_MODULE": "chat_service.settings", "VAR_DIR": str(tmp_path), **env},
    )


def test_nothing_configured_runs_embedded_sqlite_memory_broker_debug(tmp_path):
    result = load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3", "memory"]


def test_production_with_default_secrets_refuses_to_start(tmp_path):
    result = load_settings(
        tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1/test", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert result.returncode != 0
    assert all(name in result.stderr for name in ("SECRET_KEY", "CHAT_TOKEN_SECRET", "BRIDGE_SECRET"))


def test_debug_off_with_real_secrets_starts_on_postgres_and_redis(tmp_path):
    result = load_settings(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1/test",
        REDIS_URL="redis://127.0.0.1:6379/0",
        SECRET_KEY="s" * 40,
        CHAT_TOKEN_SECRET="t" * 40,
        BRIDGE_SECRET="u" * 40,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.postgresql", "redis"]


def test_malformed_numbers_name_the_variable(tmp_path):
    result = load_settings(tmp_path, CHAT_HEARTBEAT_S="soon")
    assert result.returncode != 0 and "CHAT_HEARTBEAT_S" in result.stderr


def test_database_urls_are_parsed():
    db = database_from_url("postgres://u:p%40ss@db.example:6543/chat?sslmode=require")
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "chat",
        "u",
        "p@ss",
        "db.example",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    with pytest.raises(ConfigError):
        database_from_url("mysql://x/y")


def test_the_redis_broker_is_configured_for_idle_sockets_and_bursts():
    from django.conf import settings

    host = settings.BROADCAST["HOSTS"][0]
    assert host["socket_timeout"] is None  # channels_redis#422: idle consumers die otherwise
    assert host["max_connections"] >= 1000  # redis-py's default pool refuses past 100


def test_bridge_secrets_come_from_the_environment(tmp_path):
    code = (
        "from django.conf import settings; b = settings.BRIDGE; print(b['SECRET'], b['SECRET_PREVIOUS'], b['WINDOW_S'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **CLEAN_ENV,
            "DJANGO_SETTINGS_MODULE": "chat_service.settings",
            "VAR_DIR": str(tmp_path),
            "BRIDGE_SECRET": "u" * 40,
            "BRIDGE_SECRET_PREVIOUS": "v" * 40,
            "BRIDGE_WINDOW_S": "120",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["u" * 40, "v" * 40, "120"]
