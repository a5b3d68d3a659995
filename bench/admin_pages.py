"""Time every admin page, filter and search on a large mirror (issue 18, "Speed").

    python -m bench.admin_pages --rows 1000000 --db sqlite
    python -m bench.admin_pages --rows 1000000 --db postgres

Bulk-loads ``--rows`` realistic :class:`~django_jobs.models.JobRecord` rows (see :func:`load`), spread over
``--days`` days like a real deployment (three queues, thirty job names of skewed popularity,
about 4 % failures with exception classes and messages, retried jobs, flows, correlation ids,
arguments), runs ``ANALYZE``, then requests each admin page with Django's test client, logged
in as a superuser, ``--runs`` times after one warm-up request, and prints per page the median
and the fastest wall time, the median CPU time of this process and the median time of the SQL
queries (ms; on SQLite the database works in this process, so on a busy machine the CPU time
is the closest to an idle machine's wall time), with the machine's load average. Lines whose median (``--flag-on``) is over ``--limit`` ms (300) are flagged. A database that already holds ``--rows`` rows
from an earlier run is reused (``--reload`` loads it again).

The database is SQLite (``--sqlite PATH``, default /tmp/djj_admin_bench.sqlite3) or the
PostgreSQL database ``djj_admin_bench`` on 127.0.0.1:5432 (created if missing). The admin's live
reads (job states, queue counts, workers) go to a redis-server the bench starts (empty: the
rows exist only in the database).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Queues and their share of the jobs.
QUEUES = (("default", 0.6), ("high", 0.15), ("low", 0.25))
#: Job names: module, function, median run time (s). Popularity falls with the position (Zipf).
NAMES = [
    ("shop.payments", "charge_card", 0.35), ("shop.orders", "confirm_order", 0.08), ("mail.send", "send_email", 0.2),
    ("mail.send", "send_receipt", 0.15), ("shop.stock", "reserve_stock", 0.02), ("shop.stock", "release_stock", 0.02),
    ("search.index", "reindex_product", 0.5), ("shop.payments", "refund_payment", 0.4), ("reports.daily", "build_report", 12.0),
    ("shop.orders", "ship_order", 0.1), ("media.images", "make_thumbnail", 0.8), ("media.images", "optimize_image", 1.5),
    ("crm.sync", "push_contact", 0.3), ("crm.sync", "pull_contacts", 4.0), ("shop.cart", "expire_carts", 2.0),
    ("notify.push", "send_push", 0.05), ("notify.sms", "send_sms", 0.4), ("billing.invoices", "render_invoice", 1.2),
    ("billing.invoices", "email_invoice", 0.25), ("analytics.events", "ingest_batch", 0.9), ("analytics.events", "rollup", 6.0),
    ("accounts.users", "welcome_user", 0.1), ("accounts.users", "purge_deleted", 3.0), ("shop.payments", "capture_payment", 0.3),
    ("shop.fraud", "score_order", 0.15), ("shop.catalog", "import_feed", 30.0), ("shop.catalog", "price_update", 0.05),
    ("webhooks.out", "deliver_webhook", 0.6), ("flows.checkout", "checkout_flow", 0.01), ("maintenance", "cleanup_sessions", 0.7),
]
#: Errors of failed jobs: (exception class path, message template), with weights.
ERRORS = [
    ("shop.payments.PaymentDeclined", "card ending {n4} declined by issuer (code 51)", 30),
    ("requests.exceptions.ConnectionError", "HTTPSConnectionPool(host='api.partner.example', port=443): Max retries exceeded", 20),
    ("TimeoutError", "job exceeded its timeout of 30 s", 15),
    ("ValueError", "invalid SKU {sku!r}", 10),
    ("KeyError", "'customer_id'", 8),
    ("smtplib.SMTPRecipientsRefused", "{{'user{n}@example.com': (550, b'mailbox unavailable')}}", 8),
    ("django.db.utils.OperationalError", "could not serialize access due to concurrent update", 5),
    ("shop.stock.OutOfStock", "SKU {sku} has 0 left, {n2} wanted", 4),
]
DEFAULT_SQLITE = "/tmp/djj_admin_bench.sqlite3"
PG_NAME = "djj_admin_bench"


# -- the environment --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("No redis-server found: apt-get install redis-server.")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    return proc, f"redis://127.0.0.1:{port}/0"


def ensure_pg_database(name: str) -> None:
    import psycopg

    dsn = f"host={os.environ.get('DJJ_PG_HOST', '127.0.0.1')} port={os.environ.get('DJJ_PG_PORT', '5432')} user={os.environ.get('DJJ_PG_USER', 'postgres')} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(args: argparse.Namespace, redis_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.admin_settings"
    os.environ["DJJ_ADMIN_BENCH_DB"] = args.db
    os.environ["DJJ_ADMIN_BENCH_SQLITE"] = args.sqlite
    os.environ["DJJ_ADMIN_BENCH_PG_NAME"] = args.pg_name
    os.environ["DJJ_ADMIN_BENCH_REDIS_URL"] = redis_url
    if args.db == "postgres":
        ensure_pg_database(args.pg_name)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# -- the rows ---------------------------------------------------------------------------------


class Generator:
    """Realistic rows, time-ordered, ``days`` days back from ``now`` (deterministic per seed)."""

    def __init__(self, rows: int, days: float, now: datetime, seed: int = 18) -> None:
        self.rows, self.days, self.now = rows, days, now
        self.rng = random.Random(seed)
        self.names = [(f"{m}.{f}", median) for m, f, median in NAMES]
        weights = [1 / (i + 1) ** 0.9 for i in range(len(self.names))]
        self.name_weights = weights
        self.error_weights = [w for *_, w in ERRORS]
        self.recent_parents: list[str] = []

    def job_id(self, ms: int) -> str:
        return f"{ms:012x}{self.rng.getrandbits(80):020x}"

    def error(self) -> tuple[str, str, str]:
        path, template, _ = self.rng.choices(ERRORS, self.error_weights)[0]
        n = self.rng.randrange(10_000, 99_999)
        message = template.format(n=n, n4=n % 10_000, n2=n % 7 + 2, sku=f"SKU-{n % 5000:05d}")
        line = f"{path}: {message}"
        tb = ("Traceback (most recent call last):\n  File \"/srv/app/django_jobs/worker/executor.py\", line 211, in run\n"
              "    result = task.call(*args, **kwargs)\n  File \"/srv/app/shop/jobs.py\", line 42, in handler\n"
              f"    raise {path.rsplit('.', 1)[-1]}(...)\n{line}\n")
        return path, line, tb

    def batches(self, size: int) -> Any:
        """Yield lists of row dicts (the mirror's column values), oldest first."""
        rng = self.rng
        span_ms = int(self.days * 86_400_000)
        end_ms = int(self.now.timestamp() * 1000)
        start_ms = end_ms - span_ms
        # Sorted uniform times, one in each of ``rows`` equal slices: no list of a million times.
        gap = span_ms / self.rows
        batch: list[dict[str, Any]] = []
        for i in range(self.rows):
            ms = min(int(start_ms + (i + rng.random()) * gap), end_ms - 1)
            batch.append(self.row(i, ms, end_ms))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def row(self, i: int, ms: int, end_ms: int) -> dict[str, Any]:
        rng = self.rng
        name, median = rng.choices(self.names, self.name_weights)[0]
        queue = rng.choices([q for q, _ in QUEUES], [w for _, w in QUEUES])[0]
        if name.endswith(("send_email", "send_sms", "send_push")):
            queue = "low" if rng.random() < 0.7 else queue
        job_id = self.job_id(ms)
        enqueued = datetime.fromtimestamp(ms / 1000, UTC)
        age_ms = end_ms - ms
        duration = max(0.0005, rng.lognormvariate(0, 0.6) * median)
        wait = rng.expovariate(1 / 0.4)
        attempts = 1
        error = tb = ""
        errors: list[dict[str, Any]] = []
        r = rng.random()
        if age_ms < 120_000 and r < 0.35:
            state = rng.choice(["waiting", "waiting", "active", "scheduled"])
        elif r < 0.04:
            state = "failed"
        elif r < 0.05:
            state = "cancelled"
        elif r < 0.057:
            state = "scheduled"
        elif r < 0.06 and age_ms < 3_600_000:
            state = "waiting"
        else:
            state = "completed"
        retried = state == "completed" and rng.random() < 0.02
        if state == "failed" or retried:
            attempts = rng.choice([1, 3, 3, 5]) if state == "failed" else 2
            path, error, tb = self.error()
            errors = [{"attempt": a + 1, "exception_class_path": path, "traceback": tb, "at": ms + a * 1000} for a in range(attempts)]
        started = finished = None
        if state in ("completed", "failed", "cancelled", "active"):
            started = enqueued + timedelta(seconds=wait)
            if state != "active":
                finished = started + timedelta(seconds=duration)
                if finished.timestamp() * 1000 > end_ms:
                    finished = datetime.fromtimestamp(end_ms / 1000, UTC)
        parent = ""
        if name == "flows.checkout.checkout_flow":
            self.recent_parents.append(job_id)
            del self.recent_parents[:-20]
        elif self.recent_parents and rng.random() < 0.05:
            parent = rng.choice(self.recent_parents)
        order = 100_000 + i
        return {
            "job_id": job_id, "queue": queue, "name": name, "state": state, "priority": 0, "attempts": attempts,
            "args": [order, f"user-{rng.randrange(1, 200_000)}"],
            "kwargs": {"sku": f"SKU-{rng.randrange(5000):05d}", "amount": round(rng.uniform(1, 500), 2)},
            "result": {"ok": True} if state == "completed" else None,
            "error": error, "traceback": tb, "errors": errors, "earlier_errors": [], "progress": None,
            "correlation_id": f"req-{rng.getrandbits(64):016x}" if rng.random() < 0.7 else "",
            "parent_id": parent, "workers": [f"web-{rng.randrange(4)}:{rng.randrange(1000, 9999)}"] if started else [],
            "raw_payload": "", "enqueued_at": enqueued,
            "scheduled_for": enqueued + timedelta(hours=rng.uniform(0.1, 48)) if state == "scheduled" else None,
            "started_at": started, "finished_at": finished,
            "duration": duration if finished is not None else None,
            "version": ms << 20,
        }


def register_names() -> None:
    """Register a job for each bench name (its module need not exist): the admin's name search knows them, as in a deployment."""
    from django_jobs import job

    for module, function, _ in NAMES:
        def handler() -> None:
            return None

        handler.__module__, handler.__name__, handler.__qualname__ = module, function, function
        job(handler)


def load(rows: int, days: float, now: datetime) -> float:
    """Delete every row, load ``rows`` (indexes dropped during the load, built after), ANALYZE; return the seconds it took.

    A bulk load, not the mirror: SQLite gets one multi-row INSERT per 500 rows, PostgreSQL a
    ``COPY``, the column values adapted as the mirror's upsert adapts them; the indexes are
    built once at the end, and the dashboard's tallies recounted from the rows
    (:func:`django_jobs.mirror.aggregates.rebuild`, when this version has them).
    """
    from django.db import connection, transaction

    from django_jobs.mirror import rows as mirror_rows
    from django_jobs.models import JobRecord

    derive = getattr(mirror_rows, "derived_columns", None)  # columns the mirror derives (0005 and later)
    with connection.cursor() as cursor:
        for model in _bench_models():
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
    started = time.perf_counter()
    indexes = list(JobRecord._meta.indexes)
    with connection.schema_editor() as editor:
        for index in indexes:
            editor.remove_index(JobRecord, index)
    try:  # the text search's trigram indexes (0006 and later, PostgreSQL): built after the load too
        from django_jobs.mirror import textsearch
    except ImportError:
        textsearch = None  # type: ignore[assignment]
    trigrams = textsearch is not None and textsearch.has_trigram_indexes(connection)
    if trigrams:
        textsearch.drop_trigram_indexes(connection)
    fields = list(JobRecord._meta.concrete_fields)
    plan = mirror_rows._plan(fields, connection)
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    done = 0
    for batch in Generator(rows, days, now).batches(20_000):
        values = []
        for row in batch:
            if derive is not None:
                row.update(derive(row))
            values.append([now if name == "updated_at" else (v if adapt is None or v is None else adapt(v))
                           for name, default, adapt in plan for v in [row.get(name, default)]])
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for value in values:
                        copy.write_row(value)
            else:
                one = "(" + ", ".join(["%s"] * len(fields)) + ")"
                for i in range(0, len(values), 500):
                    chunk = values[i : i + 500]
                    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(chunk))}",
                                   [v for value in chunk for v in value])
        done += len(batch)
        if done % 100_000 == 0:
            print(f"  loaded {done:,} rows ({done / (time.perf_counter() - started):,.0f} rows/s)", file=sys.stderr, flush=True)
    print("  building the indexes ...", file=sys.stderr, flush=True)
    with connection.schema_editor() as editor:
        for index in indexes:
            editor.add_index(JobRecord, index)
    if trigrams:
        print(f"  trigram indexes: {textsearch.create_trigram_indexes(connection) or 'built'}", file=sys.stderr, flush=True)
    try:
        from django_jobs.mirror import aggregates
    except ImportError:
        pass
    else:
        print("  tallying ...", file=sys.stderr, flush=True)
        aggregates.rebuild(using="default")
    seconds = time.perf_counter() - started
    analyze()
    assert JobRecord.objects.count() == rows
    return seconds


def shift_to_now() -> float:
    """Move every time of every row forward so that the newest job was enqueued now; return the seconds moved.

    For a reused database: the time filters (last 15 minutes, last hour) and the dashboard
    then see what they saw right after the load.
    """
    from django.db import connection
    from django.db.models import Max
    from django.utils import timezone

    from django_jobs.models import JobRecord

    newest = JobRecord.objects.aggregate(m=Max("enqueued_at"))["m"]
    if newest is None:
        return 0.0
    seconds = (timezone.now() - newest).total_seconds()
    table = connection.ops.quote_name(JobRecord._meta.db_table)
    columns = ("enqueued_at", "scheduled_for", "started_at", "finished_at")
    if connection.vendor == "postgresql":
        sets = ", ".join(f"{c} = {c} + make_interval(secs => %s)" for c in columns)
        params = [seconds] * len(columns)
    else:
        sets = ", ".join(f"{c} = strftime('%%Y-%%m-%%d %%H:%%M:%%f', {c}, %s)" for c in columns)
        params = [f"+{seconds:.3f} seconds"] * len(columns)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {sets}", params)
    return seconds


def _bench_models() -> list[Any]:
    from django.apps import apps

    return [m for m in apps.get_app_config("django_jobs").get_models() if m._meta.db_table.startswith("django_jobs_")]


def analyze() -> None:
    """``ANALYZE`` (SQLite), ``VACUUM ANALYZE`` (PostgreSQL: what autovacuum does after a bulk load; index-only scans need it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# -- the pages --------------------------------------------------------------------------------


def pages(now: datetime) -> list[tuple[str, str, dict[str, str]]]:
    """(label, URL name or path, query) of every page, filter and search the bench times."""
    from django_jobs.models import JobRecord

    failed = JobRecord.objects.filter(state="failed").order_by("-enqueued_at").values_list("pk", "correlation_id")[500]
    cid = JobRecord.objects.exclude(correlation_id="").order_by("-enqueued_at").values_list("correlation_id", flat=True)[300]
    arg = JobRecord.objects.order_by("-enqueued_at").values_list("args", flat=True)[200]
    parent = JobRecord.objects.filter(name="flows.checkout.checkout_flow").order_by("-enqueued_at").values_list("pk", flat=True)[50]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=7)
    lst = "admin:django_jobs_jobrecord_changelist"
    return [
        ("list", lst, {}),
        ("list, page 20", lst, {"p": "20"}),
        ("filter state=failed", lst, {"state__exact": "failed"}),
        ("filter state=waiting", lst, {"state__exact": "waiting"}),
        ("filter state=completed", lst, {"state__exact": "completed"}),
        ("filter queue=low", lst, {"queue": "low"}),
        ("filter queue=low + failed", lst, {"queue": "low", "state__exact": "failed"}),
        ("filter name=send_email", lst, {"name": "mail.send.send_email"}),
        ("filter name=import_feed + failed", lst, {"name": "shop.catalog.import_feed", "state__exact": "failed"}),
        ("filter finished last 15 min", lst, {"finished_within": "15m"}),
        ("filter finished last hour", lst, {"finished_within": "1h"}),
        ("filter finished last 24 h", lst, {"finished_within": "24h"}),
        ("filter finished last hour + failed", lst, {"finished_within": "1h", "state__exact": "failed"}),
        ("filter enqueued today", lst, {"enqueued_at__gte": today.isoformat(), "enqueued_at__lt": (today + timedelta(days=1)).isoformat()}),
        ("filter finished past 7 days", lst, {"finished_at__gte": week.isoformat(), "finished_at__lt": (today + timedelta(days=1)).isoformat()}),
        ("filter error present", lst, {"has_error": "yes"}),
        ("filter error present + queue=high", lst, {"has_error": "yes", "queue": "high"}),
        ("search job id", lst, {"q": failed[0]}),
        ("search correlation id", lst, {"q": cid}),
        ("search short name", lst, {"q": "charge_card"}),
        ("search name prefix", lst, {"q": "shop.payments."}),
        ("search error class", lst, {"q": "PaymentDeclined"}),
        ("search error text", lst, {"q": "declined by issuer"}),
        ("search error text, common", lst, {"q": "error"}),  # in 70 % of the errors (ConnectionError, ...)
        ("search argument fragment", lst, {"q": "SKU-0471"}),  # in 1 of 500 jobs' keyword arguments
        ("search argument value", lst, {"q": str(arg[1])}),
        ("search nothing matches", lst, {"q": "no-such-thing-anywhere"}),
        ("search + filter failed", lst, {"q": "OutOfStock", "state__exact": "failed"}),
        ("change page (failed job)", "admin:django_jobs_jobrecord_change", {"_pk": failed[0]}),
        ("change page (flow parent)", "admin:django_jobs_jobrecord_change", {"_pk": parent}),
        ("dashboard (hour)", "admin:django_jobs_dashboard", {}),
        ("dashboard (day)", "admin:django_jobs_dashboard", {"window": "day"}),
        ("queues", "admin:django_jobs_queues", {}),
        ("workers", "admin:django_jobs_workers", {}),
        ("schedules", "admin:django_jobs_schedules", {}),
    ]


def time_pages(runs: int) -> list[tuple[str, float, float, float, float, int, int]]:
    """Return (label, median ms, fastest ms, median CPU ms, median database ms, status, rows shown) per page."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.urls import reverse
    from django.utils import timezone

    setup_test_environment()  # responses carry their context (the rows the list shows)
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first() or user_model.objects.create_superuser("bench", "b@example.com", "pw")
    client = Client()
    client.force_login(user)
    results = []
    for label, name, query in pages(timezone.now()):
        query = dict(query)
        pk = query.pop("_pk", None)
        url = reverse(name, args=[pk] if pk else [])
        walls, cpus, dbs = [], [], []
        status, shown = 0, -1
        for attempt in range(runs + 1):
            with CaptureQueriesContext(connection) as queries:
                started, cpu = time.perf_counter(), time.process_time()
                response = client.get(url, query)
                wall, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
            if attempt:  # the first request warms caches (templates, the database's pages)
                walls.append(wall)
                cpus.append(cpu)
                dbs.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
            status = response.status_code
            ctx = getattr(response, "context", None)
            cl = ctx.get("cl") if ctx is not None and "cl" in ctx else None
            shown = len(cl.result_list) if cl is not None else -1
        results.append((label, statistics.median(walls), min(walls), statistics.median(cpus), statistics.median(dbs), status, shown))
        print(f"  {label}: {statistics.median(walls):.0f} ms", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="JobRecord rows (default 100,000)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--days", type=float, default=7.0, help="the rows' enqueue times span this many days back from now (default 7)")
    parser.add_argument("--runs", type=int, default=5, help="requests per page after one warm-up (median reported; default 5)")
    parser.add_argument("--limit", type=float, default=300.0, help="flag pages slower than this many ms (default 300)")
    parser.add_argument("--flag-on", choices=("median", "min", "cpu", "db"), default="median", help="the column compared with --limit (default median)")
    parser.add_argument("--sqlite", default=DEFAULT_SQLITE, help=f"the SQLite file (default {DEFAULT_SQLITE})")
    parser.add_argument("--pg-name", default=PG_NAME, help=f"the PostgreSQL database (default {PG_NAME})")
    parser.add_argument("--reload", action="store_true", help="load the rows even if the database holds --rows rows already")
    parser.add_argument("--shift", action="store_true", help="reusing the rows, move their times forward so the newest job was enqueued now")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="djj-admin-bench-"))
    redis_proc, redis_url = start_redis(workdir)
    try:
        setup_django(args, redis_url)
        from django.db import connection
        from django.utils import timezone

        from django_jobs.models import JobRecord

        register_names()
        have = JobRecord.objects.count()
        if have != args.rows or args.reload:
            print(f"Loading {args.rows:,} rows into {connection.vendor} ...", file=sys.stderr, flush=True)
            seconds = load(args.rows, args.days, timezone.now())
            print(f"Loaded {args.rows:,} rows in {seconds:.0f} s (bulk load, indexes built after).", flush=True)
        else:
            print(f"Reusing the {have:,} rows already in the database.", flush=True)
            if args.shift:
                print(f"Moved every row's times {shift_to_now():,.0f} s forward (the newest job enqueued now).", flush=True)
            try:
                from django_jobs.mirror import aggregates
            except ImportError:
                pass
            else:
                aggregates.rebuild(using="default")  # this version's tallies
            analyze()
        load_before = os.getloadavg()[0]
        results = time_pages(args.runs)
        width = max(len(label) for label, *_ in results)
        print(f"\n{connection.vendor}, {args.rows:,} rows, {args.runs} requests per page (ms); "
              f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs\n")
        print(f"| {'page'.ljust(width)} | median |  min |  cpu |   db | rows | |")
        print(f"|{'-' * (width + 2)}|-------:|-----:|-----:|-----:|-----:|-|")
        slow = 0
        column = {"median": 1, "min": 2, "cpu": 3, "db": 4}[args.flag_on]
        for result in results:
            label, median, fastest, cpu, db, status, shown = result
            flag = f"> {args.limit:.0f} ms" if result[column] > args.limit else ""  # type: ignore[operator]
            if status != 200:
                flag = f"HTTP {status} {flag}".strip()
            slow += bool(flag)
            print(f"| {label.ljust(width)} | {median:6.0f} | {fastest:4.0f} | {cpu:4.0f} | {db:4.0f} | {shown if shown >= 0 else '':>4} | {flag} |")
        print(f"\n{slow} line(s) flagged ({args.flag_on} over {args.limit:.0f} ms)." if slow else f"\nEvery line within {args.limit:.0f} ms ({args.flag_on}).")
        return 1 if slow else 0
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
