"""The examples in docs/*.md run, against the test Redis, so they cannot rot.

CONTRIBUTING: how to write a doc example that runs
==================================================

The info string of a fenced block says what the test suite does with it:

```` ```python test ````
    Executed, on its own (a fresh namespace; no state shared with other blocks), against the
    test Redis with a fresh key prefix. Show results with ``assert``: a wrong claim fails.
    To run jobs, call ``django_jobs.testing.work_until_empty()`` in the example.
    Extra words: ``db`` gives it the test database (``transaction=True``); ``workers`` starts
    ``manage.py runworkers --processes 1 --threads 4`` before it and stops it (SIGTERM, must exit 0)
    after it.

```` ```python jobs ````
    A piece of ``myapp/jobs.py``. It is not executed: each of its import lines must bind the
    same objects as tests/testapp/jobs_docs.py, and its other lines must appear, in order and
    contiguous (blank lines aside), in that file. ``import myapp.jobs`` in examples returns
    tests.testapp.jobs_docs, so examples use the jobs they show.

```` ```python settings ````
    A piece of settings.py. Executed; its ``DJANGO_JOBS``, ``TASKS`` and ``CACHES`` are applied
    with ``override_settings`` and django_jobs' system checks (non-deploy) must report nothing.
    ``INSTALLED_APPS``, if set, must contain ``"django_jobs"``. ``__file__`` is
    ``/srv/mysite/mysite/settings.py``. No network I/O happens, so hosts may be made up.

```` ```shell test ````
    Each ``python manage.py ...`` line (``\\`` continues a line, ``#`` starts a comment) runs as
    ``python -m django ...`` with the test settings and Redis, and must exit 0 within 60 s.
    A ``myapp.jobs`` module (re-exporting tests.testapp.jobs_docs) is on its PYTHONPATH.
    Use ``runworkers --burst`` only: a worker without it never exits.

An HTML comment right after a ``test`` block, ``<!-- test`` ... ``-->``, holds Python that runs
after the block, in its namespace (for python blocks), but does not show on the rendered page:
use it for checks that would only clutter the example.

Any other block (```` ```python ````, ```` ```yaml ````, ...) is prose. A misspelt word after the
language fails ``test_every_block_flag_is_known``. Coverage tests below make sure every setting,
queue option, check id, runworkers option and public name appears where it should.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import env_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
JOBS_MODULE = ROOT / "tests" / "testapp" / "jobs_docs.py"

#: Words a fence may carry after its language, per kind of block.
FLAGS = {
    ("python", "test"): {"db", "workers"},
    ("python", "jobs"): set(),
    ("python", "settings"): set(),
    ("shell", "test"): set(),
}
#: Settings a ``python settings`` block may apply (others it defines are only read).
APPLIED_SETTINGS = ("DJANGO_JOBS", "TASKS", "CACHES")
FAKE_SETTINGS_FILE = "/srv/mysite/mysite/settings.py"


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the first line of code
    lang: str
    words: tuple[str, ...]
    code: str
    hidden: str = ""
    hidden_line: int = 0

    @property
    def kind(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(self.words[1:])

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


_FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")


def parse(path: Path) -> list[Block]:
    """Return the fenced blocks of ``path``, each with the ``<!-- test`` code that follows it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match.groups()
        words = info.split()
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = [line.removeprefix(indent) for line in lines[start:end]]
        code = textwrap.dedent("\n".join(body))
        i = end + 1
        hidden, hidden_line = "", 0
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and lines[j].strip() == "<!-- test":
            k = j + 1
            while k < len(lines) and lines[k].strip() != "-->":
                k += 1
            hidden, hidden_line = "\n".join(lines[j + 1 : k]), j + 2
            i = k + 1
        lang, rest = (words[0], tuple(words[1:])) if words else ("", ())
        blocks.append(Block(path, start + 1, lang, rest, code, textwrap.dedent(hidden), hidden_line))
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in sorted(DOCS.glob("*.md")) for block in parse(path)]


BLOCKS = all_blocks()


def blocks_of(lang: str, kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang == lang and b.kind == kind]


def params(lang: str, kind: str) -> list[object]:
    result = []
    for block in blocks_of(lang, kind):
        marks = []
        if "db" in block.flags:
            marks = [pytest.mark.db, pytest.mark.django_db(transaction=True)]
        result.append(pytest.param(block, id=block.id, marks=marks))
    return result


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def myapp_jobs() -> Iterator[types.ModuleType]:
    """Make ``import myapp.jobs`` return tests.testapp.jobs_docs (the docs' name for it)."""
    from tests.testapp import jobs_docs

    package = types.ModuleType("myapp")
    package.__path__ = []
    package.jobs = jobs_docs  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("myapp", "myapp.jobs")}
    sys.modules["myapp"], sys.modules["myapp.jobs"] = package, jobs_docs
    yield jobs_docs
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@contextlib.contextmanager
def signal_receivers_restored() -> Iterator[None]:
    """Undo whatever receivers an example connects to the django.tasks signals."""
    from django_jobs.compat import task_enqueued, task_finished, task_started

    saved = {sig: list(sig.receivers) for sig in (task_enqueued, task_started, task_finished)}
    try:
        yield
    finally:
        for sig, receivers in saved.items():
            with sig.lock:
                sig.receivers[:] = receivers
                sig.sender_receivers_cache.clear()


def compiled(code: str, path: Path, line: int) -> types.CodeType:
    # Pad with blank lines so tracebacks name the line of the Markdown file.
    return compile("\n" * (line - 1) + code, str(path), "exec")


def start_workers(request: pytest.FixtureRequest) -> subprocess.Popen[str]:
    from django_jobs.engine import get_engine

    workers = request.getfixturevalue("workers")
    proc = workers.start("--processes", "1", "--threads", "4", "--grace", "5")
    engine = get_engine()
    wait_until(
        lambda: proc.poll() is not None or engine.workers(), 30, message="the workers' first heartbeat"
    )
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    return proc


def stop_workers(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output


# -- runnable examples -----------------------------------------------------------------------


@pytest.mark.parametrize("block", params("python", "test"))
def test_python_example_runs(block: Block, request: pytest.FixtureRequest) -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    proc = start_workers(request) if "workers" in block.flags else None
    with signal_receivers_restored():
        exec(compiled(block.code, block.path, block.line), namespace)
        if block.hidden:
            exec(compiled(block.hidden, block.path, block.hidden_line), namespace)
    if proc is not None:
        stop_workers(proc)


def shell_commands(block: Block) -> list[list[str]]:
    """Return the argv of each ``python manage.py`` command of a shell block."""
    commands: list[list[str]] = []
    pending = ""
    for raw in block.code.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        line = line.removeprefix("$ ")
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[:2] == ["python", "manage.py"], f"{block.id}: not 'python manage.py ...': {line!r}"
            commands.append(argv[2:])
    return commands


@pytest.mark.parametrize("block", params("shell", "test"))
def test_shell_example_runs(block: Block, redis_server, prefix, tmp_path) -> None:
    package = tmp_path / "pythonpath" / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text("from tests.testapp.jobs_docs import *  # noqa: F403\n")
    paths = [str(tmp_path / "pythonpath"), str(ROOT), os.environ.get("PYTHONPATH")]
    env = env_for(redis_server, prefix, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    commands = shell_commands(block)
    assert commands, f"{block.id} has no command to run"
    for argv in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "django", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = f"python manage.py {shlex.join(argv)}"
        assert proc.returncode == 0, f"{shown} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    if block.hidden:
        exec(compiled(block.hidden, block.path, block.hidden_line), {"__name__": "docs_example"})


@pytest.mark.parametrize("block", params("python", "settings"))
def test_settings_example_passes_the_system_checks(block: Block) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    from django_jobs.conf import get_settings

    namespace: dict[str, object] = {"__name__": "settings_example", "__file__": FAKE_SETTINGS_FILE}
    exec(compiled(block.code, block.path, block.line), namespace)
    if "INSTALLED_APPS" in namespace:
        assert "django_jobs" in namespace["INSTALLED_APPS"]  # type: ignore[operator]
    applied = {name: namespace[name] for name in APPLIED_SETTINGS if name in namespace}
    assert applied, f"{block.id} sets none of {', '.join(APPLIED_SETTINGS)}"
    # A snippet without REDIS_URL is a development settings file: the embedded Redis needs DEBUG.
    with override_settings(DEBUG=namespace.get("DEBUG", True), **applied):
        messages = run_checks(tags=["django_jobs"])
        assert messages == []
        get_settings()  # the settings parse


def import_lines(code: str) -> tuple[list[str], list[str]]:
    """Split a jobs block into its top-level import statements and its other lines."""
    tree = ast.parse(code)
    lines = code.splitlines()
    imports: list[str] = []
    taken: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            end = node.end_lineno or node.lineno
            imports.append("\n".join(lines[node.lineno - 1 : end]))
            taken.update(range(node.lineno, end + 1))
    rest = [line.rstrip() for n, line in enumerate(lines, 1) if n not in taken and line.strip()]
    return imports, rest


@pytest.mark.parametrize("block", params("python", "jobs"))
def test_jobs_shown_in_the_docs_are_the_jobs_the_examples_run(
    block: Block, myapp_jobs: types.ModuleType
) -> None:
    imports, rest = import_lines(block.code)
    for statement in imports:
        bound: dict[str, object] = {}
        exec(statement, bound)
        for name, value in bound.items():
            if name != "__builtins__":
                assert getattr(myapp_jobs, name, None) is value, (
                    f"{block.id}: {statement!r} binds {name!r}, which jobs_docs.py does not"
                )
    source = [line.rstrip() for line in JOBS_MODULE.read_text().splitlines() if line.strip()]
    assert rest, f"{block.id} shows no code"
    found = any(source[i : i + len(rest)] == rest for i in range(len(source) - len(rest) + 1))
    where = f"{block.id}: these lines are not in tests/testapp/jobs_docs.py as shown:\n"
    assert found, where + "\n".join(rest)


# -- coverage of the docs --------------------------------------------------------------------


def test_every_block_flag_is_known() -> None:
    wrong = []
    for block in BLOCKS:
        if block.kind in ("test", "jobs", "settings"):
            allowed = FLAGS.get((block.lang, block.kind))
            if allowed is None or not block.flags <= allowed:
                wrong.append(f"{block.id}: ```{block.lang} {' '.join(block.words)}")
        elif block.hidden:
            wrong.append(f"{block.id}: a <!-- test --> comment follows a block that does not run")
    assert wrong == []


def test_the_docs_have_runnable_examples() -> None:
    assert len(blocks_of("python", "test")) >= 20
    for lang, kind in (("shell", "test"), ("python", "settings"), ("python", "jobs")):
        assert blocks_of(lang, kind), f"no ```{lang} {kind} block"


def settings_examples() -> list[dict[str, object]]:
    examples = []
    for block in blocks_of("python", "settings"):
        namespace: dict[str, object] = {"__file__": FAKE_SETTINGS_FILE}
        exec(block.code, namespace)
        examples.append(namespace)
    return examples


def test_every_setting_and_queue_option_has_a_documented_example() -> None:
    from django_jobs.conf import DEFAULTS, QUEUE_OPTION_KEYS

    text = (DOCS / "configuration.md").read_text()
    used: set[str] = set()
    queue_options: set[str] = set()
    for namespace in settings_examples():
        config = namespace.get("DJANGO_JOBS") or {}
        assert isinstance(config, dict)
        used.update(config)
        for options in (config.get("QUEUES") or {}).values():
            queue_options.update(options or {})
    for key in DEFAULTS:
        assert f"`{key}`" in text, f"{key} is not documented in docs/configuration.md"
    assert set(DEFAULTS) - used == set(), "settings without an example (python settings block)"
    for key in QUEUE_OPTION_KEYS:
        assert f"`{key}`" in text, f"queue option {key} is not documented in docs/configuration.md"
    assert set(QUEUE_OPTION_KEYS) - queue_options == set(), "queue options without an example"


def test_every_system_check_id_is_documented() -> None:
    source = (ROOT / "django_jobs" / "checks.py").read_text()
    ids = set(re.findall(r"django_jobs\.([EW]\d{3})", source))
    text = (DOCS / "configuration.md").read_text()
    assert ids, "no check ids found in django_jobs/checks.py"
    assert sorted(i for i in ids if f"django_jobs.{i}" not in text) == []


def test_every_runworkers_option_is_documented_and_run() -> None:
    from django_jobs.management.commands.runworkers import Command

    parser = Command().create_parser("manage.py", "runworkers")
    ours = [
        action.option_strings
        for action in parser._actions
        if action.dest in ("processes", "threads", "queues", "grace", "burst")
    ]
    assert len(ours) == 5
    text = (DOCS / "workers.md").read_text()
    commands = [argv for block in blocks_of("shell", "test") for argv in shell_commands(block)]
    run = " ".join(" ".join(argv) for argv in commands)
    for options in ours:
        long = max(options, key=len)
        assert f"`{long}" in text, f"{long} is not documented in docs/workers.md"
        assert long in run, f"no shell test block runs runworkers {long}"


#: Methods that must be called in some runnable example, besides django_jobs.__all__.
PUBLIC_CALLS = (
    ".enqueue(", ".aenqueue(", ".using(", ".enqueue_many(", ".enqueue_on_commit(",
    ".get_result(", ".aget_result(", ".refresh(", ".arefresh(", ".wait(", ".cancel(",
    "work_until_empty(", "correlation_id(", "STATE_TO_STATUS",
)


def test_every_public_name_is_used_in_a_runnable_example() -> None:
    import django_jobs

    code = "\n".join(block.code for block in blocks_of("python", "test"))
    missing = [name for name in django_jobs.__all__ if not re.search(rf"\b{name}\b", code)]
    missing += [call for call in PUBLIC_CALLS if call not in code]
    assert missing == []


def test_every_job_of_jobs_docs_is_shown_in_the_docs(myapp_jobs: types.ModuleType) -> None:
    from django_jobs.tasks import JobTask

    shown = "\n".join(block.code for block in blocks_of("python", "jobs"))
    names = [name for name, value in vars(myapp_jobs).items() if isinstance(value, JobTask)]
    assert names
    assert [name for name in names if f"def {name}(" not in shown] == []
