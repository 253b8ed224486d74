"""The notifications' statements on the hot path, one round trip each (PostgreSQL), as
chat_service.threads.statements describes: a connect records the connection and reads
what the socket's first frame needs; a disconnect records when the user was last live."""

from __future__ import annotations

from chat_service.threads.notifications.models import NotificationProfile, ThreadMute
from chat_service.threads.statements import THREAD

PROFILE = NotificationProfile._meta.db_table
MUTE = ThreadMute._meta.db_table

# Connect: record the connection (and the token's e-mail), read the mutes and the
# unread total.
CONNECT = f"""
WITH p AS (
    INSERT INTO {PROFILE} (user_id, email, email_enabled, push_enabled, last_online_at, updated_at)
    VALUES (%(user_id)s, COALESCE(%(email)s, ''), true, true, %(now)s, %(now)s)
    ON CONFLICT (user_id) DO UPDATE SET
        last_online_at = EXCLUDED.last_online_at,
        email = CASE WHEN %(email)s::varchar IS NULL THEN {PROFILE}.email ELSE EXCLUDED.email END
    RETURNING 1 AS done
)
SELECT (SELECT COALESCE(array_agg(thread_id), '{{}}') FROM {MUTE} WHERE user_id = %(user_id)s) AS muted,
       COALESCE((SELECT SUM(buyer_unread) FROM {THREAD} WHERE buyer_id = %(user_id)s AND buyer_unread > 0), 0)
       + COALESCE((SELECT SUM(seller_unread) FROM {THREAD} WHERE seller_id = %(user_id)s AND seller_unread > 0), 0)
       AS unread_total,
       (SELECT count(*) FROM p) AS recorded
"""

# Disconnect: the user was live until now.
DISCONNECT = f"""
INSERT INTO {PROFILE} (user_id, email, email_enabled, push_enabled, last_online_at, updated_at)
VALUES (%(user_id)s, '', true, true, %(now)s, %(now)s)
ON CONFLICT (user_id) DO UPDATE SET last_online_at = EXCLUDED.last_online_at
"""
