"""Model rows read and written with hand-written SQL, for the few hot paths (the metered access call)
where building a statement with the ORM costs more than the database spends running it.

Values pass through the same field conversions the ORM applies, so an instance read or written here is
the one the ORM would read or write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)
_Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


class Columns:
    """One model's concrete columns under a table alias: `select()` names them for a SELECT list and
    `read()` turns that slice of a fetched row into an instance."""

    def __init__(self, model: type[M], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields: list[Field[Any, Any]] = list(model._meta.concrete_fields)
        self._converters: dict[str, list[tuple[Any, list[_Converter]]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def select(self) -> str:
        return ", ".join(f"{self.alias}.{field.column}" for field in self.fields)

    def read(self, row: Sequence[Any], start: int, using: str = "default") -> Any:
        """The instance held in row[start : start + len(self)]; None for the NULLs of an outer join."""
        values = list(row[start : start + len(self.fields)])
        if all(value is None for value in values):
            return None
        connection = connections[using]
        for index, (expression, converters) in enumerate(self._converters_for(connection)):
            for converter in converters:
                values[index] = converter(values[index], expression, connection)
        return self.model.from_db(using, [field.attname for field in self.fields], values)

    def _converters_for(self, connection: BaseDatabaseWrapper) -> list[tuple[Any, list[_Converter]]]:
        found = self._converters.get(connection.alias)
        if found is None:
            found = []
            for field in self.fields:
                expression = field.get_col(self.alias)
                converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(
                    connection
                )
                found.append((expression, converters))
            self._converters[connection.alias] = found
        return found


@functools.cache
def _insert_statement(model: type[Model], using: str) -> str:
    meta = model._meta
    quote = connections[using].ops.quote_name
    fields = insert_fields(model)
    columns = ", ".join(quote(str(field.column)) for field in fields)
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(str(meta.pk.column))}"
    )


def insert(instance: M, using: str = "default") -> M:
    """INSERT a new instance in one statement and return it saved, with its primary key.

    No signals are sent and no savepoint is made: for rows written on a hot path inside the caller's
    transaction, whose constraints live in the database.
    """
    values = {field.attname: field.pre_save(instance, True) for field in insert_fields(type(instance))}
    instance.pk = insert_values(type(instance), values, using)
    instance._state.adding = False
    instance._state.db = using
    return instance


def insert_values(model: type[Model], values: dict[str, Any], using: str = "default") -> Any:
    """INSERT one row given its values by attribute name (fields left out take their defaults) and return
    its primary key, without building a model instance."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(model, using), prepared(model, values, using))
        return cursor.fetchone()[0]


def prepared(
    model: type[Model], values: dict[str, Any], using: str = "default", omit: Collection[str] = ()
) -> list[Any]:
    """The database values of a new row's columns, in `insert_fields(model)` order, leaving out the
    fields named in `omit` (by attribute name)."""
    connection = connections[using]
    plain = _plain_fields(model, connection.alias)
    out = []
    for field in insert_fields(model):
        if field.attname in omit:
            continue
        value = values[field.attname] if field.attname in values else field.get_default()
        if type(value) is not plain.get(field.attname):
            value = field.get_db_prep_save(value, connection)
        out.append(value)
    return out


# Values a converting field would change (case, spaces, non-ASCII, a number other than 0 or 1).
_PROBES: tuple[object, ...] = (7, " Probe-Ä ", True)


@functools.cache
def _plain_fields(model: type[Model], using: str) -> dict[str, type]:
    """For each field of `model` that stores a plain int, str or bool unchanged on this database, that
    type: such a value needs no conversion call (most of an access's values, and the calls cost more
    than the rest of preparing them). Found by converting a probe value once, so a field class or a
    database that adapts the value (PostgreSQL types integers, for one) keeps the ORM's conversion."""
    connection = connections[using]
    plain: dict[str, type] = {}
    for field in insert_fields(model):
        for probe in _PROBES:
            try:
                converted = field.get_db_prep_save(probe, connection)
            except Exception:  # noqa: S112 (a field that refuses the probe is converted as usual)
                continue
            if type(converted) is type(probe) and converted == probe:
                plain[field.attname] = type(probe)
                break
    return plain


def prepared_cursor(using: str = "default") -> Any:
    """A cursor for a hot statement that PostgreSQL should parse and plan once per connection rather than
    on every call: it binds parameters on the server and prepares each statement on first use (unless the
    connection's OPTIONS turn prepared statements off, as for a transaction-pooling proxy). Another database
    gets its usual cursor."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor: Any = psycopg.Cursor(connection.connection)  # django-stubs type the wrapped cursor wrongly
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


@functools.cache
def insert_fields(model: type[Model]) -> list[Field[Any, Any]]:
    """The columns an INSERT of `model` names: every concrete field but the generated primary key."""
    return [field for field in model._meta.concrete_fields if not field.primary_key]
