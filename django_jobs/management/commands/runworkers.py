"""``manage.py runworkers``: run worker processes (see docs/workers.md)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs import registry
from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.exceptions import DjangoJobsError, RedisUnavailable


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {value!r}")
    return number


class Command(BaseCommand):
    help = "Run django_jobs worker processes: a supervisor with P processes x T threads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--processes", "-p", type=_positive_int, default=os.cpu_count() or 1,
                            help="Worker processes (default: CPU count).")
        parser.add_argument("--threads", "-t", type=_positive_int, default=8,
                            help="Jobs each process runs at a time (default: 8).")
        parser.add_argument("--queues", "-q", default="",
                            help="Comma-separated queues to serve, in order (default: all configured).")
        parser.add_argument("--grace", type=float, default=25.0,
                            help="Seconds running jobs get to finish after SIGTERM (default: 25).")
        parser.add_argument("--burst", action="store_true",
                            help="Exit once the queues are empty (for tests and one-off drains).")
        parser.add_argument("--max-jobs-per-child", type=_positive_int, default=None,
                            help="Replace a worker process after it ran this many jobs (default: "
                                 "DJANGO_JOBS['MAX_JOBS_PER_CHILD'], no limit).")
        parser.add_argument("--max-memory-per-child", type=_positive_int, default=None, metavar="MB",
                            help="Replace a worker process once it uses more than this many MB of memory "
                                 "(default: DJANGO_JOBS['MAX_MEMORY_PER_CHILD'], no limit).")
        parser.add_argument("--no-mirror", action="store_true",
                            help="Do not run the database mirror next to the workers (see docs/mirror.md).")
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="Serve Prometheus metrics on this port (needs the 'metrics' extra).")
        parser.add_argument("--reload", action="store_true",
                            help="Restart the workers when Python code changes (Django's autoreloader; for development).")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_jobs.problems import refuse

        refused = refuse()  # the list manage.py check prints (also with --skip-checks)
        if refused:
            raise CommandError(refused)
        if options.get("reload"):
            return _run_with_reloader(self, options)
        settings = get_settings()
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()] or settings.queue_names
        unknown = [q for q in queues if q not in settings.queues]
        if unknown:
            raise CommandError(
                f"Unknown queue(s): {', '.join(map(repr, unknown))}. Configured: {', '.join(settings.queue_names)}."
            )
        if options["grace"] < 0:
            raise CommandError("--grace must not be negative.")
        try:
            engine = get_engine()
        except DjangoJobsError as exc:
            raise CommandError(str(exc)) from exc
        try:
            engine.ping()
            reachable = True
        except RedisUnavailable as exc:
            from django_jobs.engine.connection import credentials_refused

            if credentials_refused(exc):
                # No retry can fix a wrong password or ACL user: one line, and exit.
                raise CommandError(f"{exc} Redis refused the credentials: check the user and password in the Redis URL.") from None
            # Workers often start before Redis (containers, reboots): they keep retrying with
            # backoff instead of exiting, so say so once and start them anyway.
            reachable = False
            self.stderr.write(f"Warning: {exc} The workers keep retrying until it answers.")
        except DjangoJobsError as exc:
            raise CommandError(str(exc)) from exc
        registry.autodiscover()
        jobs = registry.all_jobs()
        processes, threads = options["processes"], options["threads"]
        engine.close()
        from django_jobs.worker.supervisor import Supervisor

        _ensure_logging()
        metrics_line = ""
        if options["metrics_port"] is not None:
            from django_jobs.metrics import start_metrics_server

            try:
                server, _ = start_metrics_server(options["metrics_port"], queues=queues)
            except (DjangoJobsError, OSError) as exc:
                raise CommandError(f"Cannot serve metrics on port {options['metrics_port']}: {exc}") from exc
            metrics_line = f"  metrics:   http://{server.server_address[0]}:{server.server_address[1]}/metrics\n"
        max_jobs = options["max_jobs_per_child"] or settings.max_jobs_per_child
        max_memory = options["max_memory_per_child"] or settings.max_memory_per_child
        mirror_on, mirror_line = _mirror_choice(settings, options)
        supervisor = Supervisor(
            queues=queues, processes=processes, threads=threads, grace=options["grace"], burst=options["burst"],
            max_jobs=max_jobs, max_memory_mb=max_memory, mirror=mirror_on,
        )
        # From here on a signal is handled (not fatal), so a process manager that reads the
        # banner as "started" can stop the workers cleanly at once.
        supervisor.install_signals()
        self.stdout.write(
            f"django_jobs workers\n"
            f"  redis:     {engine.target}{' (embedded)' if settings.embedded else ''}{'' if reachable else ' (not reachable yet)'}\n"
            f"  queues:    {', '.join(queues)}\n"
            f"  workers:   {processes} process(es) x {threads} thread(s), grace {options['grace']:.0f} s\n"
            f"{_recycle_line(max_jobs, max_memory)}"
            f"  jobs:      {len(jobs)} registered\n"
            f"{metrics_line}"
            f"  mirror:    {mirror_line}\n"
        )
        self.stdout.flush()
        code = supervisor.run()
        if code:
            raise CommandError("A worker process exited with an error.", returncode=code)


def _ensure_logging() -> None:
    """Show job outcomes at INFO on stderr when the project configured no logging for us."""
    ours = logging.getLogger("django_jobs")
    if ours.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)


def _recycle_line(max_jobs: int | None, max_memory: int | None) -> str:
    """The banner line of the recycling limits ("" when there are none)."""
    limits = [f"after {max_jobs} job(s)" if max_jobs else "", f"above {max_memory} MB" if max_memory else ""]
    return f"  recycle:   {', '.join(x for x in limits if x)}\n" if max_jobs or max_memory else ""


def _mirror_choice(settings: Any, options: dict[str, Any]) -> tuple[bool, str]:
    """Return whether to run the database mirror, and the banner's word on it."""
    if options["burst"]:
        return False, "off (--burst)"
    if options["no_mirror"]:
        return False, "off (--no-mirror)"
    if not settings.mirror["ENABLED"]:
        return False, "off (DJANGO_JOBS['MIRROR']['ENABLED'] is False)"
    from django_jobs.mirror import mirror_available

    if not mirror_available():
        return False, "off (no django_jobs_jobrecord table: run manage.py migrate)"
    return True, f"on ({', '.join(settings.queue_names)} -> database)"


def _run_with_reloader(command_: BaseCommand, options: dict[str, Any]) -> None:
    """Run the workers in a child ``runworkers`` and start a new one when Python code changes.

    For development. Django's autoreloader (``StatReloader``) lists the files of every
    imported module, the job modules included; after a change the child gets SIGTERM (its
    running jobs finish within ``--grace``) and a fresh child starts with the new code. A
    SIGTERM or Ctrl-C stops both.
    """
    import signal
    import subprocess
    import time

    from django.utils import autoreload

    registry.autodiscover()  # import the job modules, so their files are watched
    reloader = autoreload.StatReloader()
    command = [str(a) for a in autoreload.get_child_arguments() if a != "--reload"]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    command_.stdout.write("Watching for code changes (runworkers --reload: for development).")
    command_.stdout.flush()
    while True:
        snapshot = dict(reloader.snapshot_files())
        child = subprocess.Popen(command)
        try:
            while child.poll() is None and not stopping:
                time.sleep(0.5)
                changed = [str(f) for f, mtime in reloader.snapshot_files() if snapshot.get(f) != mtime]
                if changed:
                    command_.stdout.write(f"{changed[0]} changed, restarting the workers.")
                    command_.stdout.flush()
                    break
            else:
                if stopping:  # stopped by a signal: the child stops with its own grace period
                    if child.poll() is None:
                        child.send_signal(signal.SIGTERM)
                    child.wait()
                    return
                code = child.wait()
                if code:
                    raise CommandError("The workers exited with an error.", returncode=code)
                return
        except KeyboardInterrupt:
            stopping = True
        child.send_signal(signal.SIGTERM)
        child.wait()
        if stopping:
            return
