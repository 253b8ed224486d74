"""Settings of the baseline chat: the tutorial's, with the layer on the bench's Redis.

Only what the tutorial needs: no database, no auth, no sessions. The layer is the
tutorial's (``channels_redis.core.RedisChannelLayer``, default capacity 100) with the one
fix every long-lived socket on redis-py 8 needs (``socket_timeout=None``, see
../shared/PITFALLS.md) and a pool large enough for the bench's connect bursts, so that the
baseline is not handicapped by a known misconfiguration.
"""

import os

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-baseline-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["daphne", "channels"]
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "bench.baseline.urls"
ASGI_APPLICATION = "bench.baseline.asgi.application"
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"handlers": ["console"], "level": "WARNING"},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                    "socket_timeout": None,
                    "max_connections": 2000,
                }
            ],
            "prefix": f"{os.environ.get('REDIS_PREFIX', 'bench')}:baseline",
        },
    }
}
