"""Row writes held back to the end of a batch and sent together.

A batch that applies many outcomes in one transaction (the callback inbox) keeps the
rows it locked in memory and reads only those: writing each change at once costs one
ORM statement (building it, a round trip) per row per change. Inside
:func:`updates_deferred`, :func:`save_fields` queues the instance instead, and the
block's end writes every queued row with one ``executemany`` per model and set of
fields (psycopg pipelines it: one round trip), with the values the instances hold
then; :func:`insert_later` queues new rows for one ``bulk_create`` per model.

Outside such a block, and inside a savepoint opened within it (whose rollback must
undo the write), both write at once; a nested ``atomic(savepoint=False)`` is no
savepoint and keeps them held.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.transaction import TransactionManagementError

_local = threading.local()
# Rows per UPDATE statement on PostgreSQL (each row brings a parameter per field).
UPDATE_CHUNK = 500
_M = TypeVar("_M", bound=models.Model)


@dataclass
class _Pending:
    savepoints: int
    rows: dict[tuple[type[models.Model], object], tuple[models.Model, set[str]]] = field(
        default_factory=dict
    )
    new: dict[type[models.Model], list[models.Model]] = field(default_factory=dict)


@contextmanager
def updates_deferred() -> Iterator[None]:
    """Queue :func:`save_fields` updates in this block; write them when it ends.

    Use inside the transaction, around code that reads the rows it changes only from
    the instances it holds (reading one back from the database before the block
    ends would see the old row: call :func:`flush_deferred` first). If the block
    raises, nothing queued is written (the transaction is rolling back). A nested
    block joins the outer one.

    :raises TransactionManagementError: outside a transaction.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise TransactionManagementError("updates_deferred() needs an open transaction")
    if getattr(_local, "pending", None) is not None:
        yield
        return
    pending = _Pending(savepoints=_savepoints())
    _local.pending = pending
    try:
        yield
    finally:
        _local.pending = None
    _write(pending)


def save_fields(instance: models.Model, fields: Sequence[str]) -> None:
    """``instance.save(update_fields=fields)``, or queued inside :func:`updates_deferred`."""
    pending = _open_block()
    if pending is None:
        instance.save(update_fields=fields)
        return
    key = (type(instance), instance.pk)
    queued = pending.rows.get(key)
    if queued is None:
        pending.rows[key] = (instance, set(fields))
    elif queued[0] is instance:
        queued[1].update(fields)
    else:  # another copy of the same row: write the first as it stands, then hold this one
        update_rows(type(instance), [queued[0]], sorted(queued[1]))
        pending.rows[key] = (instance, set(fields))


def insert_later(model: type[_M], instances: Sequence[_M]) -> None:
    """``model.objects.bulk_create(instances)``, or queued inside :func:`updates_deferred`
    (the instances get their primary keys when the block ends)."""
    pending = _open_block()
    if pending is None:
        model._default_manager.bulk_create(instances)
        return
    pending.new.setdefault(model, []).extend(instances)


def _open_block() -> _Pending | None:
    """The open block, unless a savepoint was opened inside it since."""
    pending: _Pending | None = getattr(_local, "pending", None)
    if pending is None or _savepoints() > pending.savepoints:
        return None
    return pending


def _savepoints() -> int:
    """Savepoints open now. A block opened with ``savepoint=False`` is not one: an
    error in it spoils the whole transaction, so nothing held can outlive a rollback."""
    return sum(sid is not None for sid in transaction.get_connection().savepoint_ids)


def flush_deferred() -> None:
    """Write what is queued now (before a read of rows that may be among them).

    :raises TransactionManagementError: inside a savepoint opened within the block: its
        rollback would undo writes that were held outside it, and they would be lost.
    """
    pending: _Pending | None = getattr(_local, "pending", None)
    if pending is None:
        return
    if _savepoints() > pending.savepoints:
        raise TransactionManagementError("flush_deferred() inside a savepoint of the block")
    _write(pending)


def _write(pending: _Pending) -> None:
    new, pending.new = pending.new, {}
    for model, instances in new.items():
        model._default_manager.bulk_create(instances)
    groups: dict[tuple[type[models.Model], tuple[str, ...]], list[models.Model]] = {}
    for instance, queued in pending.rows.values():
        groups.setdefault((type(instance), tuple(sorted(queued))), []).append(instance)
    pending.rows.clear()
    for (model, fields), instances in groups.items():
        update_rows(model, instances, fields)


def _array_type(field: Any, connection: Any) -> str:
    """The element type for ``field``'s array. Lengths are left off: an explicit cast
    to ``varchar(n)`` cuts a long value silently, where the assignment to the column
    refuses it as ``save()`` does."""
    db_type = str(field.cast_db_type(connection))
    return "text" if re.fullmatch(r"(var)?char\(\d+\)", db_type) else db_type


def update_rows(
    model: type[models.Model], instances: Iterable[models.Model], fields: Sequence[str]
) -> None:
    """Write each instance's ``fields``: on PostgreSQL one ``UPDATE ... FROM unnest(...)``
    per :data:`UPDATE_CHUNK` rows, elsewhere one ``UPDATE ... WHERE pk = %s`` per
    instance sent together (``executemany``).

    ``bulk_update`` would build one statement with a CASE per field and row, which costs
    more Python time than the round trips this saves; a statement per row costs the
    server a parse and a plan each. Values go through each field's ``pre_save``
    (``auto_now`` stamps) and ``get_db_prep_save``, as ``save()`` does.
    """
    instances = list(instances)
    if len(instances) == 1:
        instances[0].save(update_fields=fields)
        return
    if not instances:
        return
    meta = model._meta
    concrete = [meta.get_field(name) for name in fields]
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    rows = [
        [
            f.get_db_prep_save(f.pre_save(instance, False), connection)  # type: ignore[union-attr]
            for f in concrete
        ]
        + [instance.pk]
        for instance in instances
    ]
    # Names and types from the model's own metadata, values as parameters.
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    if connection.vendor != "postgresql":
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in concrete)  # type: ignore[union-attr]
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {pk} = %s", rows)  # noqa: S608
        return
    # One array per column: the statement's text is the same for any number of rows,
    # so the driver prepares it once, not once per length.
    arrays = ", ".join(f"%s::{_array_type(f, connection)}[]" for f in [*concrete, meta.pk])
    names = [quote(f"v{n}") for n in range(len(concrete))]
    assignments = ", ".join(
        f"{quote(f.column)} = v.{name}"  # type: ignore[union-attr]
        for f, name in zip(concrete, names, strict=True)
    )
    sql = (
        f"UPDATE {table} SET {assignments} FROM unnest({arrays}) "  # noqa: S608
        f"AS v({', '.join(names)}, pk) WHERE {table}.{pk} = v.pk"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(rows), UPDATE_CHUNK):
            cursor.execute(
                sql,
                [list(column) for column in zip(*rows[start : start + UPDATE_CHUNK], strict=True)],
            )
