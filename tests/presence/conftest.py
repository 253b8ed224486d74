"""Fixtures of the presence tests: a fresh per-process cache (seller visibility and reply
times are cached) and short presence timings."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def chat(settings):
    """Override chat settings for one test: chat(PRESENCE_GRACE_S=0.3, ...)."""

    def override(**values):
        settings.CHAT = {**settings.CHAT, **values}

    return override
