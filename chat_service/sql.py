"""Hand-written statements for the hot write path (a message: lock, append, notify).

Measured with bench/ (docs/performance.md): storing one message through the ORM cost
3.6 ms of CPU, most of it building SQL (compiling querysets, ``save()``'s bookkeeping);
the same statements written out cost 0.8 ms. A web process is one core (the GIL), so
that CPU was its ceiling. These helpers keep what the ORM gave that matters here:

* values go through each field's ``get_db_prep_save`` (time zones, JSON, per backend);
* an INSERT fills every column the caller leaves out with the field's default, so a new
  field with a default needs no change here;
* errors are Django's (``IntegrityError`` etc.): the cursor is Django's.

Statements are built once per (model, fields) and cached. Nothing here validates or
authorizes; the services that call it do.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone


@cache
def _insert_sql(model: type[Model], returning: bool) -> tuple[str, tuple[Any, ...]]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key or not f.auto_created)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql, fields


def insert(model: type[Model], values: dict[str, Any]) -> Any:
    """INSERT one row of ``model`` (``values`` by attribute name, defaults for the rest);
    returns the new primary key."""
    returning = connection.features.can_return_columns_from_insert
    sql, fields = _insert_sql(model, returning)
    params = [f.get_db_prep_save(_value(f, values), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] if returning else cursor.lastrowid


def _value(field: Any, values: dict[str, Any]) -> Any:
    if field.attname in values:
        return values[field.attname]
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now()
    return field.get_default()


@cache
def _update_sql(model: type[Model], names: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    fields = tuple(model._meta.get_field(name) for name in names)
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
        f"WHERE {quote(model._meta.pk.column)} = %s"
    )
    return sql, fields


def update(instance: Model, names: tuple[str, ...]) -> None:
    """UPDATE the columns ``names`` of ``instance``'s row to its current attribute values."""
    sql, fields = _update_sql(type(instance), names)
    params = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, instance.pk])


def for_update_of(table_alias: str) -> str:
    """The row-lock clause for a SELECT on this backend ("" where the whole database is
    the lock, as on SQLite with IMMEDIATE transactions)."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    return f" FOR UPDATE OF {table_alias}" if features.has_select_for_update_of else " FOR UPDATE"
