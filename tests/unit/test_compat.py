"""django_jobs.compat: the one module that imports django.tasks (Django 6) or django_tasks (5.2)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import django

from django_jobs import compat

PACKAGE = Path(__file__).resolve().parents[2] / "django_jobs"
TESTS = PACKAGE.parent / "tests"


def _direct_imports(root: Path) -> list[str]:
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[:2] == ["django", "tasks"] or n.split(".")[0] == "django_tasks"]
    return offenders


def test_no_other_module_imports_the_task_framework_directly() -> None:
    assert _direct_imports(PACKAGE) == []


def test_the_tests_import_the_task_framework_through_compat_too() -> None:
    # The fast tier runs the tests on Django 5.2 (the backport) as well.
    assert _direct_imports(TESTS) == []


def test_the_names_are_the_installed_frameworks_own() -> None:
    framework = importlib.import_module(compat.TASKS_MODULE)
    assert compat.DJANGO_HAS_TASKS == (django.VERSION >= (6, 0))
    assert compat.TASKS_MODULE == ("django.tasks" if django.VERSION >= (6, 0) else "django_tasks")
    base = importlib.import_module(f"{compat.TASKS_MODULE}.base")
    if django.VERSION[:2] == (6, 0):  # 6.1's @task, which passes django_jobs' options on
        assert compat.task is not framework.task and compat._django_task is framework.task
    else:
        assert compat.task is framework.task
    for name in ("TaskResult", "TaskResultStatus", "TaskContext", "task_backends", "default_task_backend"):
        assert getattr(compat, name) is getattr(framework, name), name
    assert compat.Task is base.Task and compat.TASK_REFRESH_ATTRS is base.TASK_REFRESH_ATTRS
    exceptions = importlib.import_module(f"{compat.TASKS_MODULE}.exceptions")
    assert compat.InvalidTask is getattr(exceptions, "InvalidTask", None) or compat.InvalidTask is exceptions.InvalidTaskError
    assert compat.TaskResultDoesNotExist is exceptions.TaskResultDoesNotExist
    signals = importlib.import_module(f"{compat.TASKS_MODULE}.signals")
    assert (compat.task_enqueued, compat.task_started, compat.task_finished) == (signals.task_enqueued, signals.task_started, signals.task_finished)
    assert compat.signals is signals
    # The dotted paths name importable backends.
    from django.utils.module_loading import import_string

    assert import_string(compat.IMMEDIATE_BACKEND).__name__ == "ImmediateBackend"
    assert import_string(compat.DUMMY_BACKEND).__name__ == "DummyBackend"


def test_the_task_backends_check_is_registered_without_the_backport_app() -> None:
    """Django 6 registers it on import; on 5.2 compat imports the backport's checks module."""
    from django.core.checks.registry import registry

    checks = importlib.import_module(f"{compat.TASKS_MODULE}.checks")
    assert checks.check_tasks in registry.registered_checks


def test_django_5_2_without_the_backport_says_what_to_install() -> None:
    code = (
        "import sys, django\n"
        "django.VERSION = (5, 2, 0, 'final', 0)\n"
        "sys.modules['django_tasks'] = None  # not installed\n"
        "try:\n"
        "    import django_jobs.exceptions\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs the django-tasks backport" in out
    assert 'pip install "django-jobs-redis[django52]"' in out


def test_task_passes_django_jobs_options_to_the_backend_on_every_django(settings) -> None:
    from django_jobs.tasks import JobTask
    from tests.testapp import jobs_docs

    decorated = compat.task(attempts=3, backoff=0, queue_name="high")(jobs_docs.send_welcome.func)
    assert isinstance(decorated, JobTask)
    assert (decorated.attempts, decorated.backoff, decorated.queue_name, decorated.run_after) == (3, 0, "high", None)
    plain = compat.task(jobs_docs.send_welcome.func)
    assert isinstance(plain, JobTask) and plain.queue_name == "default"
