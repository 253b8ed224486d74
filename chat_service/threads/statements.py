"""The hot path's statements, one round trip each (PostgreSQL).

Each is a single statement so that it runs as one transaction in autocommit on the
event loop's pool (chat_service.machinery.pgpool), and the same text runs through Django's cursor
inside a service's transaction (commerce commands, the bridge, HTTP): one copy of each
rule. SQLite (the embedded default) takes the portable path in ``services``.

APPEND is what every thread event is: it bumps ``last_seq`` under the thread's row lock
(an UPDATE takes it and keeps it to the end of the transaction, so seqs are gapless and
become visible in order), moves the author's read marker, counts one more unread for
every other party, inserts the event, queues a notification row for each recipient who
is not online, and returns per recipient its unread count in the thread and its total,
plus the order's title and supplier for the notification's words. A repeated
(thread, author, client_msg_id) fails on the unique index and rolls the whole
statement back: nothing half stored, no seq used.

Totals (over the partial indexes of threads with unread events, orders_bridge migration
0003) are read in the statement's snapshot for the *other* threads and from the row
just updated for this one, so a concurrent writer of this thread never makes them
wrong; other threads' concurrent changes show in the next count.
"""

from __future__ import annotations

from chat_service.threads.models import Event, Thread

THREAD = Thread._meta.db_table
EVENT = Event._meta.db_table
# The pending notification rows an append queues, as the thread's reverse relation names
# them (the notifications domain imports threads, not the other way round).
NOTIFICATION = Thread._meta.get_field("notifications").related_model._meta.db_table
# The order a thread belongs to, as the thread's key names it (threads import no commerce code).
ORDER_MODEL = Thread._meta.get_field("order").related_model
ORDER = ORDER_MODEL._meta.db_table

# The order's columns, in field order (ORDER_MODEL.from_db takes them as they come).
ORDER_FIELDS = tuple(f.attname for f in ORDER_MODEL._meta.concrete_fields)
ORDER_COLUMNS = ", ".join(f"o.{f.column}" for f in ORDER_MODEL._meta.concrete_fields)
EVENT_COLUMNS = "id, seq, kind, author_id, author_role, body, data, client_msg_id, created_at"

_AUTHOR_IS_BUYER = "buyer_id = %(author_id)s"
_AUTHOR_IS_SELLER = "buyer_id IS DISTINCT FROM %(author_id)s AND seller_id = %(author_id)s"
_OTHER_UNREAD = (
    f"COALESCE((SELECT SUM(x.buyer_unread) FROM {THREAD} x WHERE x.buyer_id = r.user_id"
    " AND x.order_id <> t.order_id AND x.buyer_unread > 0), 0)"
    f" + COALESCE((SELECT SUM(x.seller_unread) FROM {THREAD} x WHERE x.seller_id = r.user_id"
    " AND x.order_id <> t.order_id AND x.seller_unread > 0), 0)"
)

# Params: order_id, author_id (None: system), kind, body, data (JSON text), client_msg_id,
# now, note_kind, urgent, due_at, online (user ids with a live connection: no row).
# Rows: one per recipient (none: one row with NULL recipient); none if the thread does
# not exist or the author is not one of its parties.
APPEND = f"""
WITH t AS (
    UPDATE {THREAD} SET
        last_seq = last_seq + 1,
        last_event_at = %(now)s,
        buyer_read_seq = CASE WHEN {_AUTHOR_IS_BUYER} THEN last_seq + 1 ELSE buyer_read_seq END,
        buyer_unread = CASE WHEN {_AUTHOR_IS_BUYER} THEN 0 ELSE buyer_unread + 1 END,
        seller_read_seq = CASE WHEN {_AUTHOR_IS_SELLER} THEN last_seq + 1 ELSE seller_read_seq END,
        seller_unread = CASE WHEN {_AUTHOR_IS_SELLER} THEN 0 ELSE seller_unread + 1 END
    WHERE order_id = %(order_id)s
      AND (%(author_id)s::varchar IS NULL OR buyer_id = %(author_id)s OR seller_id = %(author_id)s)
    RETURNING order_id, last_seq, buyer_id, seller_id, buyer_unread, seller_unread
), e AS (
    INSERT INTO {EVENT} (thread_id, seq, kind, author_id, author_role, body, data, client_msg_id, created_at)
    SELECT order_id, last_seq, %(kind)s, %(author_id)s,
           CASE WHEN %(author_id)s::varchar IS NULL THEN 'system'
                WHEN buyer_id = %(author_id)s THEN 'buyer' ELSE 'seller' END,
           %(body)s, %(data)s::jsonb, %(client_msg_id)s, %(now)s
    FROM t
    RETURNING id, seq, author_role
), r AS (
    SELECT p.user_id, p.role, p.unread
    FROM t, e, LATERAL (VALUES (t.buyer_id, 'buyer', t.buyer_unread),
                               (t.seller_id, 'seller', t.seller_unread)) AS p (user_id, role, unread)
    WHERE p.role <> e.author_role
), n AS (
    INSERT INTO {NOTIFICATION} (user_id, thread_id, event_seq, kind, urgent, created_at, due_at,
                                status, reason, digest_key, data)
    SELECT r.user_id, t.order_id, e.seq, %(note_kind)s, %(urgent)s, %(now)s, %(due_at)s,
           'pending', '', '', '{{}}'::jsonb
    FROM r, t, e
    WHERE NOT (r.user_id = ANY(%(online)s::varchar[]))
)
SELECT e.id, e.seq, e.author_role, t.buyer_id, t.seller_id, t.buyer_unread, t.seller_unread,
       o.item_title, o.supplier_name,
       r.user_id, r.role, r.unread, r.unread + {_OTHER_UNREAD} AS unread_total
FROM t CROSS JOIN e JOIN {ORDER} o ON o.order_id = t.order_id LEFT JOIN r ON true
"""

# Chat messages of several threads in one statement (group commit, services.MessageBatcher):
# the same rule as APPEND for kind "message", one element of each array per message, at
# most one message per thread. Row locks are taken in order_id order, so two processes'
# batches never deadlock. Params: ords, order_ids, author_ids, bodies, client_msg_ids,
# rows (false: the recipient is online, no notification row), now, due_at.
# Rows: as APPEND's, each with its message's ord first; a message whose thread does not
# exist, or whose author is not a party, has none.
APPEND_MESSAGES = f"""
WITH i AS (
    SELECT * FROM unnest(%(ords)s::int[], %(order_ids)s::varchar[], %(author_ids)s::varchar[],
                         %(bodies)s::text[], %(client_msg_ids)s::varchar[], %(rows)s::boolean[])
             AS i (ord, order_id, author_id, body, client_msg_id, notify)
), locked AS (
    SELECT th.order_id FROM {THREAD} th JOIN i ON i.order_id = th.order_id
    WHERE th.buyer_id = i.author_id OR th.seller_id = i.author_id
    ORDER BY th.order_id
    FOR UPDATE OF th
), t AS (
    UPDATE {THREAD} th SET
        last_seq = th.last_seq + 1,
        last_event_at = %(now)s,
        buyer_read_seq = CASE WHEN th.buyer_id = i.author_id THEN th.last_seq + 1 ELSE th.buyer_read_seq END,
        buyer_unread = CASE WHEN th.buyer_id = i.author_id THEN 0 ELSE th.buyer_unread + 1 END,
        seller_read_seq = CASE WHEN th.buyer_id <> i.author_id THEN th.last_seq + 1 ELSE th.seller_read_seq END,
        seller_unread = CASE WHEN th.buyer_id <> i.author_id THEN 0 ELSE th.seller_unread + 1 END
    FROM i
    WHERE th.order_id = i.order_id AND th.order_id IN (SELECT order_id FROM locked)
    RETURNING i.ord, i.author_id, i.body, i.client_msg_id, i.notify, th.order_id, th.last_seq, th.buyer_id,
              th.seller_id, th.buyer_unread, th.seller_unread,
              CASE WHEN th.buyer_id = i.author_id THEN 'buyer' ELSE 'seller' END AS author_role
), e AS (
    INSERT INTO {EVENT} (thread_id, seq, kind, author_id, author_role, body, data, client_msg_id, created_at)
    SELECT order_id, last_seq, 'message', author_id, author_role, body, '{{}}'::jsonb, client_msg_id, %(now)s
    FROM t
    RETURNING id, thread_id
), r AS (
    SELECT t.ord, p.user_id, p.role, p.unread
    FROM t, LATERAL (VALUES (t.buyer_id, 'buyer', t.buyer_unread),
                            (t.seller_id, 'seller', t.seller_unread)) AS p (user_id, role, unread)
    WHERE p.role <> t.author_role
), n AS (
    INSERT INTO {NOTIFICATION} (user_id, thread_id, event_seq, kind, urgent, created_at, due_at,
                                status, reason, digest_key, data)
    SELECT r.user_id, t.order_id, t.last_seq, 'message', false, %(now)s, %(due_at)s,
           'pending', '', '', '{{}}'::jsonb
    FROM r JOIN t ON t.ord = r.ord
    WHERE t.notify
)
SELECT t.ord, e.id, t.last_seq, t.author_role, t.buyer_id, t.seller_id, t.buyer_unread, t.seller_unread,
       o.item_title, o.supplier_name,
       r.user_id, r.role, r.unread, r.unread + {_OTHER_UNREAD} AS unread_total
FROM t JOIN e ON e.thread_id = t.order_id JOIN {ORDER} o ON o.order_id = t.order_id
     LEFT JOIN r ON r.ord = t.ord
"""

# The original event of a repeated client_msg_id.
EVENT_BY_CLIENT_MSG_ID = f"""
SELECT {EVENT_COLUMNS} FROM {EVENT}
WHERE thread_id = %(order_id)s AND author_id = %(author_id)s AND client_msg_id = %(client_msg_id)s
"""

# thread.join: the thread, its order and (as one JSON array) the events a socket is
# shown, for a participant only. Two forms: after ``since_seq`` (oldest first), or the
# newest page. Events are arrays in EVENT_COLUMNS order.
_EVENT_ARRAY = (
    "json_build_array(e.id, e.seq, e.kind, e.author_id, e.author_role, e.body, e.data, e.client_msg_id, e.created_at)"
)
_JOIN = f"""
SELECT t.buyer_id, t.seller_id, t.last_seq, t.buyer_read_seq, t.seller_read_seq, t.buyer_unread,
       t.seller_unread, {ORDER_COLUMNS},
       (SELECT COALESCE(json_agg({_EVENT_ARRAY} ORDER BY e.seq), '[]'::json) FROM ({{events}}) e) AS events
FROM {THREAD} t JOIN {ORDER} o ON o.order_id = t.order_id
WHERE t.order_id = %(order_id)s AND (t.buyer_id = %(user_id)s OR t.seller_id = %(user_id)s)
"""
JOIN_AFTER = _JOIN.format(
    events=f"""
    SELECT * FROM {EVENT} ev WHERE ev.thread_id = t.order_id AND ev.seq > %(since_seq)s
    ORDER BY ev.seq LIMIT %(limit)s"""
)
JOIN_NEWEST = _JOIN.format(
    events=f"""
    SELECT * FROM {EVENT} ev WHERE ev.thread_id = t.order_id
    ORDER BY ev.seq DESC LIMIT %(limit)s"""
)

# Catch-up: a page of events after a cursor, up to a seq.
EVENTS_AFTER = f"""
SELECT {EVENT_COLUMNS} FROM {EVENT}
WHERE thread_id = %(order_id)s AND seq > %(after_seq)s AND seq <= %(until_seq)s
ORDER BY seq LIMIT %(limit)s
"""

# The supervisor's periodic sync: the last seq of each joined thread.
LAST_SEQS = f"SELECT order_id, last_seq FROM {THREAD} WHERE order_id = ANY(%(order_ids)s::varchar[])"

# A participant's role (typing without a join).
PARTIES = f"""
SELECT buyer_id, seller_id FROM {THREAD}
WHERE order_id = %(order_id)s AND (buyer_id = %(user_id)s OR seller_id = %(user_id)s)
"""
