"""Indexes for search by the start of an order id or tracking number, in any case
(issue 14: people type "a1000" for A10001, or the first digits of a tracking number).

Django's ``istartswith`` is ``UPPER(col::text) LIKE UPPER('prefix%')``. A btree serves a
LIKE prefix only with ``text_pattern_ops`` (or in the "C" collation), so:
* ``upper(tracking_number) text_pattern_ops`` replaces 0003's ``upper(tracking_number)``
  (which served the exact match this search had before); a tracking number is nearly
  unique, so this finds it before the user filter applies.
* ``(buyer_id | seller_id, upper(order_id) text_pattern_ops)``: a user's orders whose id
  starts so, inside the index, however many orders the user has.
PostgreSQL only, built CONCURRENTLY (hence ``atomic = False``); nothing on SQLite, where
the embedded default's few orders need no index.
"""

from __future__ import annotations

from django.db import migrations

ORDER = ("orders_bridge", "Order")
CREATE = {
    "order_tracking_upper_prefix": (ORDER, "(upper(tracking_number) text_pattern_ops)"),
    "order_buyer_id_prefix": (ORDER, "(buyer_id, upper(order_id) text_pattern_ops)"),
    "order_seller_id_prefix": (ORDER, "(seller_id, upper(order_id) text_pattern_ops)"),
}
REPLACED = {"order_tracking_upper": (ORDER, "(upper(tracking_number))")}


def _run(apps, schema_editor, create: dict, drop: dict) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (model, definition) in create.items():
        table = apps.get_model(*model)._meta.db_table
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {definition}")
    for name in drop:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def forwards(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    _run(apps, schema_editor, CREATE, REPLACED)


def backwards(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    _run(apps, schema_editor, REPLACED, CREATE)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("orders_bridge", "0003_order_search_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
