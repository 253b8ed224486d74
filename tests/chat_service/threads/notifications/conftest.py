"""Fixtures of the notification tests: real receivers on loopback, wired into settings."""

from __future__ import annotations

import pytest

from tests.chat_service.threads.notifications.receivers import SECRET, PushReceiver, SmtpReceiver


@pytest.fixture
def push():
    receiver = PushReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def notify(settings, push, smtp):
    """Push to the local HTTP receiver, e-mail over SMTP to the local SMTP server."""
    settings.NOTIFY = {**settings.NOTIFY, "WEBHOOK_URL": push.url, "SECRET": SECRET, "DIGEST_DELAY_S": 120.0}
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    return settings.NOTIFY
