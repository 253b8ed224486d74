"""Server settings with the broker's ``socket_timeout=None`` removed.

Not used by the suite. It exists to check whether
``test_redis_layer_limits.py::test_socket_idle_longer_than_redis_socket_timeout_survives``
catches the redis-py 8 trap (channels_redis#422): run

    E2E_SERVER_SETTINGS=tests.e2e.settings_without_socket_timeout_fix \\
        .venv/bin/pytest tests/e2e/test_redis_layer_limits.py -k idle
"""

from chat_service.settings import *  # noqa: F403

for _host in BROADCAST["HOSTS"]:  # noqa: F405
    _host.pop("socket_timeout", None)
