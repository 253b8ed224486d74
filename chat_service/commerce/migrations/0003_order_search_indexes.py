"""Indexes for order search (chat_service.commerce.selectors) at a marketplace's volume.

Every query of the Manage Orders list is scoped to one user and one role, so every index
leads with ``buyer_id`` or ``seller_id``:

* ``(buyer_id | seller_id, ordered_at desc, order_id "C" desc)``: a user's orders newest
  first, also from a cursor and within a date range, read in index order and stopped
  after one page (and, index-only, the user's order ids for the "disputes" tab). With
  ``status`` second: the same per status tab, and the tab counts (index-only). The
  seller-side ones include ``buyer_id``: an order a user sold to themselves is listed as
  the buyer's, and excluding it from the seller side then needs no table rows. Ids are
  in the "C" collation because the selectors sort and compare them so (byte order,
  whatever the database's default collation is).
* GIN ``(buyer_id | seller_id, upper(item_title | supplier_name) gin_trgm_ops)``
  (btree_gin + pg_trgm): the orders of one user whose title or supplier contains a
  substring, found inside the index (GIN intersects the user's entries with the
  trigrams'), so a rare term costs the same for a buyer with 10,000 orders as for one
  with 10. Django's ``icontains`` is ``UPPER(col) LIKE UPPER('%q%')``, hence ``upper()``.
* ``upper(tracking_number)``: ``iexact`` is ``UPPER(col) = UPPER(%s)``; a tracking number
  is nearly unique, so this finds it before the user filter applies.
* On the threads table (chat_service), partial indexes of the threads with unread events
  per party, with the order id (and buyer id) for index-only reads: the "unread" tab and
  its count read a user's few unread threads instead of walking all their orders. Small
  (only unread threads); the counters change together with ``last_event_at``, indexed
  already, so these cost no HOT updates.

PostgreSQL only (pg_trgm and btree_gin, trusted extensions since PostgreSQL 13). The
indexes are built CONCURRENTLY, so applying this to a live table does not block order
writes; hence ``atomic = False``. On SQLite (the embedded default) the two list indexes
and the unread ones are created, the rest is skipped. Not in the models' Meta: Django
cannot express a column collation or an operator class per column there.

The 0001 indexes ``order_buyer_recent`` / ``order_seller_recent`` are prefixes of the
list indexes and could go; they are declared in the model, so removing them is a change
to chat_service/commerce/models.py.
"""

from __future__ import annotations

from django.db import migrations

_LIST = 'ordered_at DESC, order_id COLLATE "C" DESC'
ORDER = ("orders_bridge", "Order")
THREAD = ("chat_service", "Thread")
# name: (model, definition). The seller-side indexes carry buyer_id so that leaving out
# orders a user sold to themselves (listed as the buyer's) needs no table rows.
POSTGRESQL = {
    "order_buyer_list": (ORDER, f"(buyer_id, {_LIST})"),
    "order_seller_list": (ORDER, f"(seller_id, {_LIST}) INCLUDE (buyer_id)"),
    "order_buyer_status_list": (ORDER, f"(buyer_id, status, {_LIST})"),
    "order_seller_status_list": (ORDER, f"(seller_id, status, {_LIST}) INCLUDE (buyer_id)"),
    "order_buyer_title_trgm": (ORDER, "USING gin (buyer_id, upper(item_title) gin_trgm_ops)"),
    "order_seller_title_trgm": (ORDER, "USING gin (seller_id, upper(item_title) gin_trgm_ops)"),
    "order_buyer_supplier_trgm": (ORDER, "USING gin (buyer_id, upper(supplier_name) gin_trgm_ops)"),
    "order_seller_supplier_trgm": (ORDER, "USING gin (seller_id, upper(supplier_name) gin_trgm_ops)"),
    "order_tracking_upper": (ORDER, "(upper(tracking_number))"),
    "thread_buyer_unread": (THREAD, "(buyer_id, order_id) WHERE buyer_unread > 0"),
    "thread_seller_unread": (THREAD, "(seller_id, order_id) INCLUDE (buyer_id) WHERE seller_unread > 0"),
}
SQLITE = {
    "order_buyer_list": (ORDER, "(buyer_id, ordered_at DESC, order_id DESC)"),
    "order_seller_list": (ORDER, "(seller_id, ordered_at DESC, order_id DESC)"),
    "thread_buyer_unread": (THREAD, "(buyer_id, order_id) WHERE buyer_unread > 0"),
    "thread_seller_unread": (THREAD, "(seller_id, order_id) WHERE seller_unread > 0"),
}


def create_indexes(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        create, indexes = "CREATE INDEX CONCURRENTLY IF NOT EXISTS", POSTGRESQL
    elif vendor == "sqlite":
        create, indexes = "CREATE INDEX IF NOT EXISTS", SQLITE
    else:
        return
    for name, (model, definition) in indexes.items():
        table = apps.get_model(*model)._meta.db_table
        schema_editor.execute(f"{create} {name} ON {table} {definition}")


def drop_indexes(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        drop, names = "DROP INDEX CONCURRENTLY IF EXISTS", list(POSTGRESQL)
    elif vendor == "sqlite":
        drop, names = "DROP INDEX IF EXISTS", list(SQLITE)
    else:
        return
    for name in names:
        schema_editor.execute(f"{drop} {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("orders_bridge", "0002_offers_disputes_inbox_outbox"),
        ("chat_service", "0001_create_threads_and_events"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
