"""The mirror's rows: a job hash as :class:`~django_jobs.models.JobRecord` column values, and their upsert."""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_jobs.engine.protocol import JobState
from django_jobs.engine.record import decode_payload, payload_fields
from django_jobs.engine.streams import stream_id_key
from django_jobs.mirror import aggregates
from django_jobs.tasks import ms_to_datetime

logger = logging.getLogger("django_jobs.mirror")

#: Bound parameters per INSERT statement (SQLite allows 32,766; PostgreSQL 65,535).
MAX_PARAMS = 30_000
#: At most this many rows per multi-row INSERT (SQLite), and only a power of two of them: the
#: driver caches each distinct statement it prepared (128 of them), a 1,000-row statement takes
#: ~4 MB of C heap, and a statement per batch size kept a mirror at ~100 MB after a burst (issue
#: 17). Powers of two up to 256 are at most 9 statements (~2 MB), prepared once: half the CPU a row too.
STATEMENT_ROWS = 256


def version_of(entry_id: str) -> int:
    """Return a stream entry id ``"<ms>-<seq>"`` as one increasing integer (``ms << 20 | seq``)."""
    ms, seq = stream_id_key(entry_id)
    return ms << 20 | min(seq, (1 << 20) - 1)


def _error_line(error: dict[str, Any]) -> str:
    """Return "ValueError: bad input" from one recorded error (the traceback's last line)."""
    tb = str(error.get("traceback") or "").rstrip().splitlines()
    last = tb[-1].strip() if tb else ""
    return last or str(error.get("exception_class_path") or "")


def error_class_of(error: str) -> str:
    """Return the exception class of an error line without its module, or "" (not a class).

    >>> error_class_of("shop.payments.PaymentDeclined: card declined"), error_class_of("Child job 1 ended failed")
    ('PaymentDeclined', '')
    """
    head = (error or "").strip().split(":", 1)[0].strip()
    return head.rsplit(".", 1)[-1][:200] if head and " " not in head else ""


def derived_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The columns computed from others (for rows built around :func:`row_from_hash`, e.g. a bulk load)."""
    return {"error_class": error_class_of(row.get("error") or "")}


class JSONText(str):
    """A JSON column's value as the JSON text the job hash holds: written as is, not decoded and
    encoded again (:func:`row_from_hash` with ``texts=True``). The database checks it (SQLite's
    ``JSON_VALID`` constraint on a JSON column, PostgreSQL's ``jsonb`` cast); text it refuses is
    decoded by :func:`_clean_row` on the row-by-row path, and left empty if it is not JSON."""

    __slots__ = ()


def row_from_hash(queue: str, job_id: str, data: dict[str, str], version: int, *, texts: bool = False) -> dict[str, Any]:
    """Return the :class:`JobRecord` column values for a job hash (see docs/architecture.md).

    Never raises on bad data (:mod:`django_jobs.engine.record`'s policy, the same values as
    :meth:`JobView.from_hash <django_jobs.engine.record.JobView.from_hash>`): a payload that does
    not decode is kept in ``raw_payload``, other fields that do not decode are left empty. Reads
    only the fields a row holds, each decoded once (the mirror's hottest function: a flow
    parent's children are not decoded here).

    ``texts=True`` (the mirror's writes): ``result``, ``progress`` and ``workers`` are the hash's
    JSON text as :class:`JSONText` (``workers`` when it is a list), not decoded: no column
    derived from them, and decoding and encoding them again was a tenth of the mirror's CPU.
    """
    get = data.get
    if texts:
        raw_r, raw_pg, raw_wk = get("r"), get("pg"), get("wk")
        result = JSONText(raw_r) if raw_r and raw_r != "null" else None
        progress = JSONText(raw_pg) if raw_pg and raw_pg != "null" else None
        workers = JSONText(raw_wk) if raw_wk and raw_wk[0] == "[" else _json_field(raw_wk, [], list)
        name, args, kwargs, problem = _payload_memo(get("d"))
    else:
        result, progress, workers = _json_field(get("r"), None), _json_field(get("pg"), None), _json_field(get("wk"), [], list)
        payload = decode_payload(get("d"))
        name, args, kwargs, problem = payload.name, payload.args, payload.kwargs, bool(payload.problem)
    raw_err, raw_eh = get("err"), get("eh")
    if raw_err:
        errors = [e for e in _json_field(raw_err, [], list) if isinstance(e, dict)]
        last = errors[-1] if errors else {}
        error = _error_line(last) if last else ""
    else:  # no error recorded (most rows): nothing to decode
        errors, last, error = [], {}, ""
    earlier = [e for e in _json_field(raw_eh, [], list) if isinstance(e, dict)] if raw_eh else []
    finished, last_start = _integer(get("f")), _integer(get("la"))
    duration = (finished - last_start) / 1000 if finished and last_start else None
    state = get("s") or ""
    return {
        "job_id": job_id,
        "queue": queue,
        "name": name[:255],
        "state": state,
        "priority": max(-32768, min(32767, _integer(get("p")) or 0)),
        "attempts": max(0, _integer(get("a")) or 0),
        "args": args,
        "kwargs": kwargs,
        "result": result,
        "error": error,
        "error_class": error_class_of(error) if error else "",
        "traceback": str(last.get("traceback") or "") if last else "",
        "errors": errors,
        "earlier_errors": earlier,
        "progress": progress,
        "correlation_id": (get("cid") or "")[:200],
        "parent_id": (get("par") or "")[:64],
        "workers": workers,
        "raw_payload": (get("d") or "") if problem else "",
        "enqueued_at": _moment(get("e")),
        "scheduled_for": _moment(get("run")) if state == JobState.SCHEDULED else None,
        "started_at": _moment(get("st")),
        "finished_at": _moment(get("f")),
        "duration": duration,
        "version": version,
    }


#: Entries at which a memo of :func:`_moment` or :func:`_payload_memo` is emptied (bounds its memory).
MEMO_MAX = 4_096
#: Payloads at most this long are memoized by :func:`_payload_memo` (a few KB of memo at most).
MEMO_PAYLOAD = 256
_moments: dict[str, datetime] = {}
_payloads: dict[str, tuple[str, list[Any], dict[str, Any], bool]] = {}


def _moment(raw: str | None) -> datetime | None:
    """``ms_to_datetime(_integer(raw))`` for a hash's time field, memoized by its text.

    The rows of one batch share most of their times: a bulk enqueue stores one ``e`` for all its
    jobs, a fetch one ``st`` and a settle one ``f`` for the jobs of its call. A datetime is
    immutable: rows may share one (issue 17: building them was ~10 % of the mirror's CPU).
    """
    if not raw:
        return None
    when = _moments.get(raw)
    if when is None:
        when = ms_to_datetime(_integer(raw))
        if when is None:
            return None
        if len(_moments) >= MEMO_MAX:
            _moments.clear()
        _moments[raw] = when
    return when


def forget_memos() -> None:
    """Empty the memos of :func:`_moment` and :func:`_payload_memo` (the mirror, once caught up after a burst)."""
    _moments.clear()
    _payloads.clear()


def _payload_memo(raw: str | None) -> tuple[str, list[Any], dict[str, Any], bool]:
    """A payload's (name, args, kwargs, did not decode) for the mirror's rows, memoized by its text when short.

    Jobs enqueued together often share their payload text (a bulk enqueue of one task with the
    same arguments, a task without any): decoded once. The args and kwargs are then shared by
    those rows: the mirror only encodes them (never changes them), so only its writes
    (``row_from_hash(texts=True)``) use this.
    """
    if raw is not None and len(raw) <= MEMO_PAYLOAD:
        got = _payloads.get(raw)
        if got is not None:
            return got
    fields = payload_fields(raw)
    got = ("?", [], {}, True) if isinstance(fields, str) else (fields[0], fields[1], fields[2], False)
    if raw is not None and len(raw) <= MEMO_PAYLOAD:
        if len(_payloads) >= MEMO_MAX:
            _payloads.clear()
        _payloads[raw] = got
    return got


def _integer(raw: str | None) -> int | None:
    """An integer hash field (None: missing, empty or not an integer)."""
    if not raw:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _json_field(raw: str | None, default: Any, kind: type | None = None) -> Any:
    """A JSON hash field (``default``: missing, not JSON, or not of ``kind``)."""
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return default
    if kind is not None and not isinstance(value, kind):
        return default
    return value


# -- writing rows ----------------------------------------------------------------------------


def _model() -> Any:
    from django_jobs.models import JobRecord

    return JobRecord


@aggregates.counted  # the dashboard's tallies follow every row written (mirror/aggregates.py)
def upsert(rows: Sequence[dict[str, Any]], *, using: str, arrays: Sequence[str] | None = None) -> int:
    """Insert or update ``rows`` (dicts of column values), never replacing a newer ``version``.

    ``INSERT ... ON CONFLICT (job_id) DO UPDATE ... WHERE version <= excluded.version``, the
    same SQL on SQLite and PostgreSQL (``bulk_create(update_conflicts=True)`` cannot express
    the version check). On PostgreSQL one statement whose parameters are one array per column
    (``SELECT ... FROM unnest(...)``); on SQLite one multi-row statement per chunk of
    :data:`MAX_PARAMS` parameters, sent to the driver's cursor in its own ``?`` style (Django's
    ``%s`` to ``?`` rewrite of a 30,000-parameter string cost more than the statement;
    ``executemany`` of a one-row statement cost more too). Returns the number of rows sent.
    ``arrays``: on PostgreSQL, :func:`upsert_arrays` of these rows, built beforehand (the
    mirror builds them on its own thread while its writer thread commits the batch before).
    """
    if not rows:
        return 0
    conn = connections[using]
    shape = _shape(conn)
    with conn.cursor() as cursor:
        if shape.sql_unnest:
            # PostgreSQL: one array per column, one short statement (psycopg parses a statement
            # of 30,000 placeholders on every call: more than half the mirror's CPU), each array
            # sent as its literal text (psycopg's list dumper quotes element by element with a
            # regular expression: about 30 us a row, twice this).
            cursor.execute(shape.sql_unnest, list(arrays) if arrays is not None else _arrays(shape, rows))
            return len(rows)
        params = list(zip(*_columns(shape, rows), strict=True))
        # SQLite: the driver's own cursor (inside the caller's atomic block all the same).
        execute = conn.connection.execute if conn.vendor == "sqlite" else cursor.execute
        with conn.wrap_database_errors:  # the driver's errors as Django's (_upsert_safely catches those)
            start = 0
            for count in statement_sizes(len(params), per_statement(len(shape.plan))):
                chunk = params[start : start + count]
                start += count
                execute(shape.sql_many(count), [value for row in chunk for value in row])
    return len(rows)


def per_statement(columns: int) -> int:
    """The most rows one multi-row INSERT of ``columns`` columns holds: a power of two, at most
    :data:`STATEMENT_ROWS` and :data:`MAX_PARAMS` parameters."""
    most = max(1, min(STATEMENT_ROWS, MAX_PARAMS // max(1, columns)))
    return 1 << (most.bit_length() - 1)


def statement_sizes(rows: int, most: int) -> list[int]:
    """Split ``rows`` into statements of powers of two rows, largest first, none above ``most`` (a power of two).

    ``statement_sizes(1000, 256) == [256, 256, 256, 128, 64, 32, 8]``: whatever the batch, the
    upserts use at most log2(``most``) + 1 distinct statements (see :data:`STATEMENT_ROWS`).
    """
    sizes = [most] * (rows // most)
    rest = rows % most
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def upsert_arrays(rows: Sequence[dict[str, Any]], *, using: str) -> list[str] | None:
    """Return :func:`upsert`'s parameters for ``rows`` on PostgreSQL (one array literal per column), else None.

    Pure Python, no query: the mirror calls it while it prepares a batch, so its writer thread
    only sends them. None too when a value cannot be written as it is (the write then goes row
    by row, cleaned: :func:`_upsert_safely`).

    >>> upsert_arrays([], using="default") is None  # doctest: +SKIP
    True
    """
    shape = _shape(connections[using])
    if not rows or not shape.sql_unnest:
        return None
    try:
        return _arrays(shape, rows)
    except (TypeError, ValueError):
        return None


def _columns(shape: _Shape, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """``rows`` column by column, adapted for the database (one list per column, each adapter
    applied over its column: no loop over the adapters per row), ``updated_at`` now."""
    plan, getter, full = shape.plan, shape.getter, shape.full
    columns: list[Any] = list(zip(*[getter(row) if full <= row.keys()  # a row_from_hash row: every column there
                                    else tuple(row.get(name, default) for name, default, _adapt in plan)
                                    for row in rows], strict=True))
    for i, adapt in shape.adapters:
        columns[i] = [None if value is None else adapt(value) for value in columns[i]]
    # Datetimes: each distinct value adapted once (the rows of a batch share most of their
    # times, :func:`_moment`; adapting one cost ~2-3 us, a dictionary look-up ~0.1).
    adapted: dict[datetime, Any] = {}
    for i, adapt in shape.dates:
        column = columns[i] = list(columns[i])
        for j, value in enumerate(column):
            if value is not None:
                text = adapted.get(value)
                if text is None:
                    text = adapted[value] = adapt(value)
                column[j] = text
    columns[shape.updated_at] = [shape.adapt_now(timezone.now())] * len(rows)
    return columns


def _arrays(shape: _Shape, rows: Sequence[dict[str, Any]]) -> list[str]:
    """PostgreSQL: the array literal of each column of ``rows``."""
    return [_column_literal(kind, column) for kind, column in zip(shape.kinds, _columns(shape, rows), strict=True)]


class _Shape:
    """The upsert's statements and per-column adapters for one database connection (built once)."""

    def __init__(self, conn: Any) -> None:
        model = _model()
        qn = conn.ops.quote_name
        fields = list(model._meta.concrete_fields)
        table = qn(model._meta.db_table)
        columns = [qn(f.column) for f in fields]
        pk, version = qn(model._meta.pk.column), qn(model._meta.get_field("version").column)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != pk)
        self.plan = _plan(fields, conn)
        # JSON columns get their JSON text (encoded here, see _json_text); PostgreSQL casts it.
        marks = ["%s::jsonb" if conn.vendor == "postgresql" and _is_json(f) else "%s" for f in fields]
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._tail = f" ON CONFLICT ({pk}) DO UPDATE SET {updates} WHERE {table}.{version} <= EXCLUDED.{version}"
        self._one = "(" + ", ".join(marks) + ")"
        self._many: dict[int, str] = {}  #: sql_many's statements by row count (powers of two: a few)
        if conn.vendor == "sqlite":
            self._one = self._one.replace("%s", "?")
        #: PostgreSQL: ``INSERT ... SELECT ... FROM unnest(<one array per column>)``, JSON as text.
        self.sql_unnest = ""
        #: Per column, how its array literal is built (:func:`_column_literal`).
        self.kinds = [_kind(f) for f in fields]
        if conn.vendor == "postgresql":
            arrays = ", ".join(f"%s::{'text' if _is_json(f) else f.db_type(conn)}[]" for f in fields)
            aliases = [f"c{i}" for i in range(len(fields))]
            select = ", ".join(f"{a}::jsonb" if _is_json(f) else a for a, f in zip(aliases, fields, strict=True))
            self.sql_unnest = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} "
                               f"FROM unnest({arrays}) AS u({', '.join(aliases)})" + self._tail)
        names = [name for name, _default, _adapt in self.plan]
        self.getter = operator.itemgetter(*[name if name != "updated_at" else "job_id" for name in names])
        self.full = frozenset(names) - {"updated_at"}
        #: Per column, its adapter (JSON columns: :func:`_json_text`), and per datetime column its adapter (memoized by value).
        self.adapters = [(i, adapt) for i, (name, _default, adapt) in enumerate(self.plan)
                         if adapt is not None and name != "updated_at" and not _is_datetime(fields[i])]
        self.dates = [(i, adapt) for i, (name, _default, adapt) in enumerate(self.plan)
                      if adapt is not None and name != "updated_at" and _is_datetime(fields[i])]
        self.updated_at = next(i for i, (name, _default, _adapt) in enumerate(self.plan) if name == "updated_at")
        self.adapt_now: Callable[[datetime], Any] = self.plan[self.updated_at][2]

    def sql_many(self, count: int) -> str:
        sql = self._many.get(count)
        if sql is None:
            sql = self._many[count] = self._head + ", ".join([self._one] * count) + self._tail
        return sql


_shapes: weakref.WeakKeyDictionary[Any, _Shape] = weakref.WeakKeyDictionary()


def _shape(conn: Any) -> _Shape:
    shape = _shapes.get(conn)
    if shape is None:
        shape = _shapes[conn] = _Shape(conn)
    return shape


def _kind(field: Any) -> str:
    """``"text"`` (JSON columns hold their text here), ``"number"``, ``"datetime"`` or ``""`` (any)."""
    from django.db import models

    if isinstance(field, (models.CharField, models.TextField, models.JSONField)):
        return "text"
    if isinstance(field, (models.IntegerField, models.FloatField)) and not isinstance(field, models.AutoField):
        return "number"
    if isinstance(field, models.DateTimeField):
        return "datetime"
    return ""


def _column_literal(kind: str, values: Sequence[Any]) -> str:
    """:func:`_array_literal` of one column of ``kind``, without a type test per value (the
    mirror's rows); a value of another type falls back to :func:`_array_literal`.

    >>> print(_column_literal("text", ['a "b"', None]), _column_literal("number", [1, None, 0.5]))
    {"a \\"b\\"",NULL} {1,NULL,0.5}
    """
    try:
        if kind == "text":
            return "{" + ",".join(["NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                   for v in values]) + "}"
        if kind == "datetime":
            # Each distinct time written once (a batch's rows share most of them, _moment).
            texts: dict[Any, str] = {}
            out = []
            for v in values:
                if v is None:
                    out.append("NULL")
                    continue
                text = texts.get(v)
                if text is None:
                    text = texts[v] = '"' + v.isoformat() + '"'
                out.append(text)
            return "{" + ",".join(out) + "}"
        if kind == "number" and all(type(v) is int or v is None for v in values):
            return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"
    except AttributeError:  # not a str / not a datetime
        pass
    return _array_literal(values)


def _array_literal(values: Sequence[Any]) -> str:
    r"""Return PostgreSQL's array literal of one column's values, for a cast to the column's array type.

    Strings (JSON columns hold their JSON text here) are double-quoted with ``\`` and ``"``
    escaped, datetimes are their ISO 8601 text, numbers their ``str``, None is ``NULL``.

    >>> print(_array_literal(['a "b"', None, 7, 0.5, "c:\\d"]))
    {"a \"b\"",NULL,7,0.5,"c:\\d"}
    """
    out = []
    for value in values:
        if value is None:
            out.append("NULL")
        elif isinstance(value, str):
            out.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(value, datetime):
            out.append('"' + value.isoformat() + '"')
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(str(value))
        else:
            raise TypeError(f"Cannot write {type(value).__name__} {value!r} to an array literal.")
    return "{" + ",".join(out) + "}"


def _is_datetime(field: Any) -> bool:
    from django.db import models

    return isinstance(field, models.DateTimeField)


def _is_json(field: Any) -> bool:
    from django.db import models

    return isinstance(field, models.JSONField)


def _json_text(value: Any, *, encoder: Any) -> str:
    """The JSON text of a JSON column's value (what Django's ``adapt_json_value`` would encode)."""
    if value.__class__ is JSONText:
        return str(value)
    if not value and isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value, cls=encoder)


def _plan(fields: list[Any], conn: Any) -> list[tuple[str, Any, Any]]:
    """Return per column (attname, default, adapter or None): the fast path of ``get_db_prep_save``.

    The mirror writes thousands of rows a second; the field layers cost more than the SQL.
    JSON values become their text (cast to ``jsonb`` in the statement on PostgreSQL), datetime
    values go through the backend's own adapter, the rest as they are.
    """
    from django.conf import settings
    from django.db import models

    plan = []
    for f in fields:
        adapt = None
        if isinstance(f, models.JSONField):
            adapt = functools.partial(_json_text, encoder=f.encoder)
        elif isinstance(f, models.DateTimeField):
            adapt = conn.ops.adapt_datetimefield_value
            if conn.vendor == "sqlite" and settings.USE_TZ:
                adapt = functools.partial(_sqlite_datetime, slow=adapt)
        plan.append((f.attname, f.get_default(), adapt))
    return plan


def _sqlite_datetime(value: datetime, *, slow: Callable[[Any], Any]) -> Any:
    """SQLite's datetime text for an aware UTC datetime (what Django writes), without its checks."""
    if value.tzinfo is UTC:
        return str(value.replace(tzinfo=None))
    return slow(value)


def _clean(value: Any) -> Any:
    """Return ``value`` without NUL characters (PostgreSQL's text and jsonb refuse them).

    A :class:`JSONText` is decoded before, by :func:`_clean_row`.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """:func:`_clean` of every column, each :class:`JSONText` decoded first (text that is not
    JSON, or a ``workers`` that is not a list, is left empty: ``row_from_hash``'s policy)."""
    out = {}
    for name, value in row.items():
        if value.__class__ is JSONText:
            value = _json_field(value, [], list) if name == "workers" else _json_field(value, None)
        out[name] = _clean(value)
    return out


def _upsert_safely(rows: Sequence[dict[str, Any]], *, using: str, arrays: Sequence[str] | None = None) -> int:
    """:func:`upsert` (``arrays``: its parameters built beforehand); when the database refuses the batch's data, write row by row, cleaned.

    A value the database cannot store (a NUL character on PostgreSQL, say) must not block the
    mirror: the row is cleaned and, if even that fails, written with its payload kept as text.
    Connection errors are not data errors: they propagate (nothing is acknowledged).
    """
    from django.db import DataError, IntegrityError

    try:
        with transaction.atomic(using=using):
            return upsert(rows, using=using, arrays=arrays)
    except (DataError, IntegrityError, ValueError, TypeError):
        pass
    for row in rows:
        try:
            with transaction.atomic(using=using):
                upsert([_clean_row(row)], using=using)
        except (DataError, IntegrityError, ValueError, TypeError):
            logger.warning("Mirror: job %s could not be stored as is; keeping its raw payload", row["job_id"])
            cleaned = _clean_row(row)
            bare = {**cleaned, "args": [], "kwargs": {}, "result": None, "errors": [],
                    "earlier_errors": [], "progress": None, "workers": []}
            bare["raw_payload"] = _clean(json.dumps({k: cleaned[k] for k in ("args", "kwargs", "result")}, default=repr))
            with transaction.atomic(using=using):
                upsert([bare], using=using)
    return len(rows)


def stored_versions(job_ids: Sequence[str], *, using: str) -> dict[str, tuple[int, str, int | None]]:
    """Return, for those of ``job_ids`` that have a row, (version, state, finish time in ms or None).

    One primary-key read per 2,000 ids, no model instances: the mirror asks it about the jobs
    of a batch that its memory of written versions does not cover (a mirror far behind, or
    just restarted) before reading their hashes again.
    """
    model = _model()
    conn = connections[using]
    qn = conn.ops.quote_name
    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    out: dict[str, tuple[int, str, int | None]] = {}
    with conn.cursor() as cursor:
        for start in range(0, len(job_ids), 2_000):
            chunk = list(job_ids[start : start + 2_000])
            cursor.execute(
                f"SELECT {pk}, {qn('version')}, {qn('state')}, {qn('finished_at')} FROM {table} WHERE {pk} {_in(conn, chunk)}",
                [chunk] if conn.vendor == "postgresql" else chunk,
            )
            for job_id, version, state, finished in cursor.fetchall():
                out[job_id] = (int(version or 0), state, _to_ms(finished))
    return out


def _in(conn: Any, values: Sequence[Any]) -> str:
    """``IN (%s, ...)``, or on PostgreSQL ``= ANY(%s)`` with one array parameter (psycopg parses a
    statement's placeholders on every call: one instead of thousands)."""
    if conn.vendor == "postgresql":
        return "= ANY(%s)"
    return f"IN ({', '.join(['%s'] * len(values))})"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_ms(value: Any) -> int | None:
    """Redis milliseconds of a stored datetime (SQLite gives text, PostgreSQL a datetime); the inverse of ``ms_to_datetime``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - _EPOCH) // timedelta(microseconds=1) + 500) // 1000


@aggregates.counted_gone
def _write_gone(queue: str, gone: dict[str, tuple[str, str]], *, using: str) -> list[str]:
    """Write jobs whose hash is already deleted from what their final event says.

    ``gone`` maps job id to (entry id, final event). An existing row gets the state and
    finish time; a missing one is created with only what the event knows. Returns the ids
    whose row was missing or not finished: jobs that left Redis before the mirror recorded
    how they ended (a finished row means retention deleted a job the mirror had recorded).
    """
    if not gone:
        return []
    model = _model()
    existing = dict(model.objects.using(using).filter(pk__in=list(gone)).values_list("pk", "state"))
    fresh = []
    lost = []
    for job_id, (entry_id, event) in gone.items():
        version = version_of(entry_id)
        finished = ms_to_datetime(stream_id_key(entry_id)[0])
        if job_id in existing:
            if existing[job_id] == event:
                continue  # recorded as it ended, then deleted by retention: nothing to write
            if existing[job_id] not in ("completed", "failed", "cancelled"):
                lost.append(job_id)
            model.objects.using(using).filter(pk=job_id, version__lte=version).update(
                state=event, finished_at=Coalesce(F("finished_at"), finished), version=version, updated_at=timezone.now()
            )
        else:
            lost.append(job_id)
            fresh.append({"job_id": job_id, "queue": queue, "name": "?", "state": event,
                          "finished_at": finished, "version": version})
    upsert(fresh, using=using)
    return lost


def _advance_cursor(queue: str, entry_id: str, *, using: str) -> None:
    from django_jobs.models import MirrorCursor

    cursor = MirrorCursor.objects.using(using).filter(queue=queue).first()
    if cursor is None:
        MirrorCursor.objects.using(using).create(queue=queue, last_event_id=entry_id)
    elif not cursor.last_event_id or stream_id_key(entry_id) > stream_id_key(cursor.last_event_id):
        cursor.last_event_id = entry_id
        cursor.save(using=using, update_fields=["last_event_id", "updated_at"])


