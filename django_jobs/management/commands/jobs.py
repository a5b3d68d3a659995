"""``manage.py jobs``: see and steer queues from a shell (see docs/operations.md)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_jobs import operations
from django_jobs.ages import age_label
from django_jobs.conf import get_settings
from django_jobs.engine import get_engine
from django_jobs.engine.protocol import JobState
from django_jobs.engine.queue import Engine
from django_jobs.engine.record import JobView
from django_jobs.exceptions import DjangoJobsError
from django_jobs.operations import SkipReason
from django_jobs.tasks import ms_to_datetime

#: States that hold jobs (``waiting_children`` is reserved for flows).
LISTABLE = tuple(JobState)
#: Jobs per script call in bulk retry and purge (each call stays short for Redis).
BATCH = 500


def _when(ms: str | int | None) -> str:
    dt = ms_to_datetime(ms)
    return dt.isoformat(timespec="seconds") if dt else ""


def job_summary(job_id: str, data: dict[str, str], queue: str = "") -> dict[str, Any]:
    """One job as a plain dict (the rows of ``list``)."""
    return _summary(JobView.from_hash(queue, job_id, data))


def _summary(view: JobView) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "state": view.state,
        "priority": view.priority or 0,
        "attempts": view.attempts,
        "enqueued_at": _when(view.enqueued_ms),
        "finished_at": _when(view.finished_ms),
        "due_at": _when(view.due_ms),
        "worker": view.worker,
    }


def job_detail(queue: str, job_id: str, data: dict[str, str]) -> dict[str, Any]:
    """One job with everything known about it (``show``); a corrupt hash lists its ``problems``."""
    view = JobView.from_hash(queue, job_id, data)
    detail = {
        **_summary(view),
        "queue": queue,
        "args": view.args,
        "kwargs": view.kwargs,
        "options": view.options,
        "started_at": _when(view.started_ms),
        "last_attempted_at": _when(view.last_started_ms),
        "workers": view.workers,
        "correlation_id": view.correlation_id,
        "parent_id": view.parent_id,
        "recoveries": view.recoveries,
        "cancel_requested": view.cancel_requested,
        "failure_reason": view.reason,
        "result": view.result,
        "errors": view.errors,
        "earlier_errors": view.earlier_errors,
    }
    if view.corrupt:
        detail["problems"] = list(view.problems)
    return detail


def _last_line(error: dict[str, Any]) -> str:
    """Return "ValueError: bad input" from one recorded error (its traceback's last line)."""
    lines = str(error.get("traceback") or "").rstrip().splitlines()
    return (lines[-1].strip() if lines else "") or str(error.get("exception_class_path") or "")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Format ``rows`` as a plain text table."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _add_django_options(parser: CommandParser) -> None:
    """Accept Django's common options after the subcommand too (``jobs stats --settings X``).

    ``manage.py`` reads ``--settings`` and ``--pythonpath`` anywhere on the command line before it
    loads the settings; the subcommand's parser must only not refuse them. SUPPRESS keeps the
    values given before the subcommand when they are not repeated after it.
    """
    import argparse

    quiet = argparse.SUPPRESS
    parser.add_argument("--settings", default=quiet, help=quiet)
    parser.add_argument("--pythonpath", default=quiet, help=quiet)
    parser.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=quiet, help=quiet)
    parser.add_argument("--traceback", action="store_true", default=quiet, help=quiet)
    parser.add_argument("--no-color", action="store_true", default=quiet, help=quiet)
    parser.add_argument("--force-color", action="store_true", default=quiet, help=quiet)
    parser.add_argument("--skip-checks", action="store_true", default=quiet, help=quiet)


def _mirror_behind(stats: dict[str, Any]) -> str:
    """"0", or "1234 entries (oldest 5.2s)" for the stats table."""
    behind = stats["mirror_behind_events"]
    if not behind:
        return "0"
    return f"{behind} entries (oldest {age_label(stats['mirror_lag_seconds'])})"


class Command(BaseCommand):
    help = "Inspect and steer django_jobs queues: stats, list, show, retry, cancel, pause, resume, limits, purge, workers, mirror, resync, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        common = CommandParser(add_help=False)
        common.add_argument("--json", action="store_true", help="Print JSON (for scripts) instead of a table.")
        common.add_argument("--user", help="Record changes in the admin history as this Django user (default: the OS user).")
        _add_django_options(common)
        confirm = CommandParser(add_help=False)
        confirm.add_argument("--yes", "-y", action="store_true", help="Do not ask for confirmation.")
        sub = parser.add_subparsers(dest="action", metavar="SUBCOMMAND", required=True)

        p = sub.add_parser("stats", parents=[common], help="Per queue: jobs by state, throughput, oldest waiting job.")
        p.add_argument("queues", nargs="*", metavar="QUEUE", help="Queues to show (default: all configured).")

        p = sub.add_parser("list", parents=[common], help="List the jobs of a queue in one state, a page at a time.")
        p.add_argument("queue", metavar="QUEUE")
        p.add_argument("--state", choices=LISTABLE, default="waiting", help="Which jobs (default: waiting).")
        p.add_argument("--page", type=int, default=1, help="Page number, from 1 (default: 1).")
        p.add_argument("--per-page", type=int, default=20, help="Jobs per page (default: 20).")

        p = sub.add_parser("show", parents=[common], help="Show one job.")
        p.add_argument("job_id", metavar="ID")

        p = sub.add_parser("retry", parents=[common, confirm], help="Retry a failed or cancelled job, or all failed jobs of a queue.")
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("job_id", metavar="ID", nargs="?")
        what.add_argument("--failed", metavar="QUEUE", help="Retry every failed job of QUEUE.")

        p = sub.add_parser("cancel", parents=[common, confirm], help="Cancel a job (a running one is asked to stop), or all jobs of a queue in a state.")
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("job_id", metavar="ID", nargs="?")
        what.add_argument("--queue", dest="cancel_queue", metavar="QUEUE", help="Cancel every job of QUEUE in --state (waiting and scheduled by default).")
        p.add_argument("--state", dest="cancel_states", action="append", choices=operations.CANCELLABLE,
                       help="With --queue: which jobs (repeat for several; waiting_children: flow parents, which cancels their unfinished children).")
        p.add_argument("--name", dest="cancel_name", metavar="JOB", help="With --queue: only jobs of this job name (its module path).")

        for name, text in (("pause", "Stop workers taking jobs from a queue."), ("resume", "Let workers take jobs from a queue again.")):
            p = sub.add_parser(name, parents=[common], help=text)
            what = p.add_mutually_exclusive_group(required=True)
            what.add_argument("queue", metavar="QUEUE", nargs="?")
            what.add_argument("--all", action="store_true", help="Every configured queue.")

        p = sub.add_parser("purge", parents=[common, confirm], help="Delete the finished jobs of a queue in one state.")
        p.add_argument("queue", metavar="QUEUE")
        p.add_argument("--state", choices=Engine.PURGEABLE, required=True, help="completed, failed or cancelled.")

        p = sub.add_parser("limits", parents=[common], help="Show or change queue rate and concurrency limits at run time.")
        p.add_argument("queues", nargs="*", metavar="QUEUE", help="Queues to show (default: all configured); one queue to change.")
        p.add_argument("--rate", help="Set the rate limit, e.g. 100/m ('none' lifts it).")
        p.add_argument("--concurrency", help="Set the concurrency limit, e.g. 5 ('none' lifts it).")
        p.add_argument("--reset", action="store_true", help="Drop the run-time overrides: the settings apply again.")

        sub.add_parser("workers", parents=[common], help="List live workers.")
        sub.add_parser("schedules", parents=[common], help="List cron schedules: next run, last tick, last job's state.")

        # The database mirror (docs/mirror.md).
        p = sub.add_parser("mirror", parents=[common], help="Run the database mirror in the foreground (runworkers runs it too).")
        p.add_argument("queues", nargs="*", metavar="QUEUE", help="Queues to mirror (default: all).")
        p.add_argument("--once", action="store_true", help="Mirror what is pending, then exit.")
        p = sub.add_parser("resync", parents=[common], help="Rebuild the database mirror from Redis.")
        p.add_argument("queues", nargs="*", metavar="QUEUE", help="Queues to resync (default: all).")
        p = sub.add_parser("prune", parents=[common], help="Delete mirror rows of jobs that finished long ago.")
        p.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                       help="Age in seconds (default: DJANGO_JOBS['MIRROR']['RETENTION']).")

    # -- plumbing -------------------------------------------------------------------------

    def do_schedules(self, options: dict[str, Any]) -> None:
        from django_jobs.scheduler import format_schedules_table, schedules_table

        rows = schedules_table()
        self.emit(rows, lambda: format_schedules_table(rows))

    def handle(self, *args: Any, **options: Any) -> None:
        self.options = options
        action = options["action"]
        self.emitted: Any = None
        self.results: list[operations.OperationResult] = []  # bulk operations: each job is recorded
        try:
            self.engine = get_engine()
            getattr(self, f"do_{action}")(options)
        except (DjangoJobsError, CommandError) as exc:
            self.record({"error": str(exc)})
            raise CommandError(str(exc)) from exc
        self.record(self.emitted)

    def record(self, outcome: Any) -> None:
        from django_jobs.audit import record_command

        if (why := record_command(self.options, outcome, self.results)) is not None:
            self.stderr.write(why)

    def emit(self, data: Any, text: Callable[[], str]) -> None:
        self.emitted = data
        if self.options.get("json"):
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            self.stdout.write(text())

    def queue(self, name: str) -> str:
        names = get_settings().queue_names
        if name not in names:
            raise CommandError(f"Unknown queue {name!r}. Configured: {', '.join(names)}.")
        return name

    def find(self, job_id: str) -> tuple[str, dict[str, str]]:
        names = get_settings().queue_names
        found = self.engine.find_job(job_id, names)
        if found is None:
            raise CommandError(f"No job {job_id!r} in queues {', '.join(names)} (it may have been trimmed).")
        return found

    def confirm(self, question: str) -> None:
        if self.options.get("yes"):
            return
        if not sys.stdin.isatty():
            raise CommandError(f"{question} Refusing without a terminal to confirm on: pass --yes.")
        answer = input(f"{question} [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise CommandError("Aborted; nothing changed.")

    def progress(self, done: int, total: int, verb: str) -> None:
        if not self.options.get("json"):
            self.stderr.write(f"  {verb} {done}/{max(total, done)}")

    # -- subcommands ----------------------------------------------------------------------

    def do_stats(self, options: dict[str, Any]) -> None:
        queues = [self.queue(q) for q in options["queues"]] or get_settings().queue_names
        stats: dict[str, dict[str, Any]] = {}
        for q in queues:
            flow = self.engine.throughput(q, seconds=60)
            stats[q] = {
                **self.engine.counts(q),
                "paused": self.engine.is_paused(q),
                "completed_last_minute": flow["completed"],
                "failed_last_minute": flow["failed"],
                "oldest_waiting_seconds": self.engine.oldest_waiting_age(q),
            }
        mirrored = get_settings().mirror["ENABLED"]
        if mirrored:  # the database mirror's lag (docs/mirror.md#lag)
            from django_jobs.mirror import mirror_lag

            for q, lag in mirror_lag(queues).items():
                stats[q].update(mirror_behind_events=lag.behind, mirror_lag_seconds=lag.age,
                                mirror_unrecorded_jobs=lag.unrecorded, mirror_lost_jobs=lag.lost)
        headers = ["queue", "paused", *LISTABLE, "done/min", "failed/min", "oldest waiting"]
        headers += ["mirror behind"] if mirrored else []
        rows = [
            [q, "yes" if s["paused"] else "no", *(s[state] for state in LISTABLE), s["completed_last_minute"],
             s["failed_last_minute"], age_label(s["oldest_waiting_seconds"])]
            + ([_mirror_behind(s)] if mirrored else [])
            for q, s in stats.items()
        ]
        self.emit(stats, lambda: table(rows, headers))

    def do_list(self, options: dict[str, Any]) -> None:
        q = self.queue(options["queue"])
        page, per_page = options["page"], options["per_page"]
        if page < 1 or per_page < 1:
            raise CommandError("--page and --per-page must be at least 1.")
        total, jobs = self.engine.list_jobs(q, options["state"], offset=(page - 1) * per_page, limit=per_page)
        rows = [job_summary(job_id, data) for job_id, data in jobs if data]
        pages = max(1, -(-total // per_page))
        data = {"queue": q, "state": options["state"], "total": total, "page": page, "pages": pages, "jobs": rows}

        def text() -> str:
            if not rows:
                return f"No {options['state']} jobs in {q!r} on page {page} of {pages} ({total} in all)."
            when = "finished_at" if options["state"] in Engine.PURGEABLE else "due_at" if options["state"] == "scheduled" else "enqueued_at"
            body = table([[r["id"], r["name"], r["state"], r["priority"], r["attempts"], r[when]] for r in rows],
                         ["id", "job", "state", "priority", "attempts", when.replace("_", " ")])
            return f"{body}\npage {page} of {pages}, {total} {options['state']} job(s) in {q!r}"

        self.emit(data, text)

    def do_show(self, options: dict[str, Any]) -> None:
        from django_jobs.admin import redact_arguments

        q, raw = self.find(options["job_id"])
        detail = job_detail(q, options["job_id"], raw)
        # Secrets stay hidden as in the admin (DJANGO_JOBS['REDACT_ARGUMENTS']).
        detail["args"], detail["kwargs"] = redact_arguments(detail["name"], detail["args"], detail["kwargs"])
        tree = _flow_tree(options["job_id"], raw)
        if tree is not None:
            detail["flow"] = tree.as_dict()

        def text() -> str:
            lines = []
            for key, value in detail.items():
                if key in ("errors", "earlier_errors", "flow"):
                    continue
                if value in ("", [], {}, None):
                    continue
                if isinstance(value, (list, dict)):
                    value = json.dumps(value)
                lines.append(f"{key + ':':<19}{value}")
            for number, error in enumerate(detail["earlier_errors"], 1):  # earlier runs first
                lines.append(f"{f'earlier error {number}:':<19}{_last_line(error)} (before retry)")
            for number, error in enumerate(detail["errors"], 1):
                lines.append(f"error {number}:{'':<11}{error.get('exception_class_path', '')}")
            if detail["errors"]:
                lines.append("last traceback:\n" + str(detail["errors"][-1].get("traceback", "")).rstrip())
            if tree is not None:
                lines.append("flow:\n" + "\n".join("  " + line for line in tree.lines(mark=options["job_id"])))
            return "\n".join(lines)

        self.emit(detail, text)

    def do_retry(self, options: dict[str, Any]) -> None:
        if options["job_id"]:
            job_id = options["job_id"]
            q, raw = self.find(job_id)
            outcome = operations.retry([(q, job_id)]).outcome(job_id)
            if outcome is SkipReason.NOT_RETRYABLE:
                raise CommandError(f"Job {job_id!r} is {raw.get('s')!r}; only failed or cancelled jobs can be retried.")
            if outcome is SkipReason.UNIQUE_KEY_HELD:
                raise CommandError(
                    f"Job {job_id!r} was not retried: another job holds its unique key now; retry it once that job is done."
                )
            if outcome is SkipReason.CHILD_FAILED:
                raise CommandError(
                    f"Job {job_id!r} was not retried: it is a flow parent that failed because a child failed; "
                    "retry that child (it re-opens the parent), or retry the failed jobs of its queue together."
                )
            if outcome is SkipReason.NOT_FOUND:
                raise CommandError(f"No job {job_id!r} in queue {q!r} (it may have been trimmed).")
            if outcome is not operations.Action.RETRY:
                raise CommandError(f"Job {job_id!r} was not retried: {outcome}.")
            self.emit({"id": job_id, "queue": q, "retried": 1}, lambda: f"Job {job_id} is waiting again in {q!r}.")
            return
        q = self.queue(options["failed"])
        total = self.engine.counts(q)["failed"]
        if total == 0:
            self.emit({"queue": q, "retried": 0}, lambda: f"No failed jobs in {q!r}.")
            return
        self.confirm(f"Retry {total} failed job(s) of queue {q!r}?")
        result = operations.retry(
            operations.JobFilter(q, ("failed",)), progress=lambda n, of: self.progress(n, of, "retried"), chunk=BATCH
        )
        self.results.append(result)
        done = result.done_count
        skips = result.skip_counts()
        held = skips.get(SkipReason.UNIQUE_KEY_HELD, 0) + skips.get(SkipReason.CHILD_FAILED, 0)
        if held:
            self.emit(
                {"queue": q, "retried": done, "held": held},
                lambda: (f"Retried {done} failed job(s) of {q!r}; {held} not retried: another job holds their unique key, "
                         "or a flow parent's failed child was not retried with it."),
            )
            return
        self.emit({"queue": q, "retried": done}, lambda: f"Retried {done} failed job(s) of {q!r}.")

    def do_cancel(self, options: dict[str, Any]) -> None:
        if options.get("cancel_queue"):
            self.cancel_by_filter(options)
            return
        job_id = options["job_id"]
        q, raw = self.find(job_id)
        view = JobView.from_hash(q, job_id, raw)
        self.confirm(f"Cancel job {job_id} ({view.name}, {view.state}) in {q!r}?")
        result = operations.cancel([(q, job_id)]).outcome(job_id)
        if result is SkipReason.NOT_FOUND:
            raise CommandError(f"No job {job_id!r} in queue {q!r} (it may have been trimmed).")
        outcomes: dict[object, str] = {
            operations.Action.CANCEL: "cancelled", "requested": "requested", SkipReason.ALREADY_FINISHED: "finished",
        }
        if result not in outcomes:
            raise CommandError(f"Job {job_id!r} was not cancelled: {result}.")
        outcome = outcomes[result]
        messages = {
            "cancelled": f"Job {job_id} is cancelled; it will not run.",
            "requested": f"Job {job_id} is running; its worker was asked to stop it.",
            "finished": f"Job {job_id} had already finished ({raw.get('s')}); nothing changed.",
        }
        self.emit({"id": job_id, "queue": q, "result": outcome}, lambda: messages[outcome])

    def cancel_by_filter(self, options: dict[str, Any]) -> None:
        q = self.queue(options["cancel_queue"])
        states = tuple(options.get("cancel_states") or ("waiting", "scheduled"))
        name = options.get("cancel_name")
        which = f"{'/'.join(states)} jobs" + (f" of {name}" if name else "")
        self.confirm(f"Cancel every {which} in queue {q!r}?")
        result = operations.cancel(operations.JobFilter(q, states, name))  # what limits.cancel_jobs() runs
        self.results.append(result)
        finished = result.skip_counts().get(SkipReason.ALREADY_FINISHED, 0)
        counts = {"cancelled": result.done_count, "requested": result.requested_count, "finished": finished}
        self.emit({"queue": q, **counts}, lambda: (
            f"Cancelled {counts['cancelled']} {which} in {q!r}; asked {counts['requested']} running job(s) to stop."
        ))

    def do_pause(self, options: dict[str, Any]) -> None:
        if options.get("all"):
            names = list(operations.pause().queues)
            self.emit({"queues": names, "paused": True}, lambda: f"Paused {', '.join(names)}: workers take no jobs from them (enqueue still works).")
            return
        q = self.queue(options["queue"])
        operations.pause(q)
        self.emit({"queue": q, "paused": True}, lambda: f"Queue {q!r} is paused: workers take no jobs from it (enqueue still works).")

    def do_resume(self, options: dict[str, Any]) -> None:
        if options.get("all"):
            names = list(operations.resume().queues)
            self.emit({"queues": names, "paused": False}, lambda: f"Resumed {', '.join(names)}.")
            return
        q = self.queue(options["queue"])
        operations.resume(q)
        self.emit({"queue": q, "paused": False}, lambda: f"Queue {q!r} is running again.")

    def do_limits(self, options: dict[str, Any]) -> None:
        from django_jobs.limits import UNSET, queue_limits, reset_queue_limits, set_queue_limits

        names = [self.queue(q) for q in options["queues"]] or get_settings().queue_names
        changing = options.get("rate") is not None or options.get("concurrency") is not None or options.get("reset")
        if changing:
            if len(names) != 1 or not options["queues"]:
                raise CommandError("Name exactly one queue to change its limits, e.g. jobs limits emails --rate 100/m.")
            if options.get("reset"):
                reset_queue_limits(names[0])
            else:
                def value(raw: str | None, convert: Any) -> Any:
                    if raw is None:
                        return UNSET
                    return None if raw.lower() == "none" else convert(raw)

                try:
                    concurrency = value(options.get("concurrency"), int)
                except ValueError:
                    raise CommandError(f"--concurrency {options['concurrency']!r}: use a whole number or 'none'.") from None
                set_queue_limits(names[0], rate=value(options.get("rate"), str), concurrency=concurrency)
        rows = []
        for q in names:
            limits = queue_limits(q)
            rows.append({"queue": q, "rate": limits.rate, "concurrency": limits.concurrency, "overridden": limits.overridden})
        self.emit(rows, lambda: table(
            [[r["queue"], r["rate"] or "-", r["concurrency"] or "-", "run time" if r["overridden"] else "settings"] for r in rows],
            ["queue", "rate", "concurrency", "source"],
        ))

    def do_purge(self, options: dict[str, Any]) -> None:
        q, state = self.queue(options["queue"]), options["state"]
        total = self.engine.counts(q)[state]
        if total == 0:
            self.emit({"queue": q, "state": state, "deleted": 0}, lambda: f"No {state} jobs in {q!r}.")
            return
        self.confirm(f"Delete {total} {state} job(s) of queue {q!r} for good?")
        deleted = operations.purge(q, state, progress=lambda n, of: self.progress(n, of, "deleted"), chunk=BATCH).deleted
        self.emit({"queue": q, "state": state, "deleted": deleted}, lambda: f"Deleted {deleted} {state} job(s) of {q!r}.")

    def do_workers(self, options: dict[str, Any]) -> None:
        workers = self.engine.workers()
        now = time.time()
        rows = [
            [wid, info.get("host", ""), info.get("pid", ""), ",".join(info.get("queues", [])), info.get("threads", ""),
             info.get("running", ""), info.get("processed", ""), age_label(now - float(info.get("started", now))),
             age_label(now - float(info.get("beat", now)))]
            for wid, info in sorted(workers.items())
        ]
        headers = ["worker", "host", "pid", "queues", "threads", "running", "processed", "up", "last beat"]
        self.emit(workers, lambda: table(rows, headers) if rows else "No live workers.")

    # -- the database mirror (django_jobs/mirror/) -----------------------------------------

    def do_mirror(self, options: dict[str, Any]) -> None:
        from django_jobs import mirror

        queues = [self.queue(q) for q in options["queues"]] or get_settings().queue_names
        self._mirror_table()
        if options["once"]:
            written = mirror.mirror_once(queues)
            self.emit({"queues": queues, "written": written}, lambda: f"Mirrored {written} job row(s) of {', '.join(queues)}.")
            return
        self.stdout.write(f"Mirroring {', '.join(queues)} into the database (Ctrl+C to stop)")
        self.stdout.flush()
        mirror.run_mirror(queues)

    def do_resync(self, options: dict[str, Any]) -> None:
        from django_jobs import mirror

        queues = [self.queue(q) for q in options["queues"]] or get_settings().queue_names
        self._mirror_table()

        def progress(queue: str, state: str, done: int, total: int) -> None:
            if not options.get("json"):
                self.stderr.write(f"  {queue} {state}: {done}/{total}")

        written = mirror.resync(queues, progress=progress)
        self.emit({"queues": queues, "written": written}, lambda: f"Resynced {written} job row(s) of {', '.join(queues)}.")

    def do_prune(self, options: dict[str, Any]) -> None:
        from django_jobs import mirror

        older = options["older_than"]
        if older is not None and older < 0:
            raise CommandError(f"--older-than must be a number of seconds >= 0, not {older!r}.")
        self._mirror_table()
        deleted = mirror.prune(older)
        self.emit({"deleted": deleted}, lambda: f"Deleted {deleted} finished job row(s) from the mirror.")

    def _mirror_table(self) -> None:
        from django_jobs.mirror import mirror_available

        if not mirror_available():
            raise CommandError("The mirror's table (django_jobs_jobrecord) does not exist. Run manage.py migrate first.")

def _flow_tree(job_id: str, raw: dict[str, str]) -> Any:
    """Return the flow tree of a job that is part of a flow (None for other jobs)."""
    if not JobView.from_hash("", job_id, raw).in_flow:
        return None
    from django_jobs.flows import flow_tree

    return flow_tree(job_id)
