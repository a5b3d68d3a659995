"""The A/B harness of ``bench/bulk_ab.py`` and ``bench/settle_fetch_ab.py``: two checkouts, in turn.

:func:`alternate` starts one redis-server of its own (a free port, no AOF, no RDB: only the
calls' cost), then for each round runs one process per checkout (A B, then B A, ...), each the
calling script with ``--child`` and ``PYTHONPATH=ROOT`` (the checkout measured). A child prints
one JSON object per measured call, per job: ``wall``, ``py`` (its CPU) and ``redis`` (Redis' CPU)
in microseconds. The parent imports this module as ``bench.ab``; a child imports only its two
clocks, :func:`redis_cpu_s` and :func:`py_cpu_s`, as the top-level module ``ab``: a child puts
the calling script's directory last on ``sys.path`` (after the checkout measured, the standard
library and site-packages, so it shadows nothing), so that is this checkout's file whatever
checkout ``PYTHONPATH`` names (an older one has no ``bench/ab.py``). This module imports only
the standard library for that reason.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any


def redis_cpu_s(client: Any) -> float:
    """Redis' CPU so far, seconds (``INFO cpu``: user + system), of ``client``'s server."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def py_cpu_s() -> float:
    """This process' CPU so far, seconds (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Figures:
    """Every child's figures per checkout, and each round's median of ``key`` per checkout."""

    per_root: dict[str, dict[str, list[float]]]
    rounds: list[dict[str, float]] = field(default_factory=list)

    def ratios(self, a: str, b: str) -> list[float]:
        """A's round median over B's, sorted: the two ran within the same minute."""
        return sorted(pair[a] / pair[b] for pair in self.rounds)


def alternate(script: str, roots: list[str], rounds: int, child_args: list[str], *, prefix: str, key: str) -> Figures:
    """Run ``script --child *child_args`` in each of ``roots``, alternating the order each round."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix=f"djj-{prefix}-ab-")
    binary = shutil.which("redis-server") or "redis-server"
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--appendonly", "no", "--save", "",
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    figures = Figures({root: {"wall": [], "py": [], "redis": []} for root in roots})
    try:
        time.sleep(0.5)
        for round_ in range(rounds):
            order = roots if round_ % 2 == 0 else roots[::-1]
            figures.rounds.append({})
            for root in order:
                env = dict(os.environ, PYTHONPATH=root, DJANGO_SETTINGS_MODULE="bench.settings",
                           DJJ_BENCH_REDIS_URL=f"redis://127.0.0.1:{port}/0", DJJ_BENCH_PREFIX=prefix)
                out = subprocess.run(
                    [sys.executable, script, "--child", *child_args],
                    env=env, cwd=root, check=True, capture_output=True, text=True,
                ).stdout
                values = []
                for line in out.splitlines():
                    measured = json.loads(line)
                    for name, value in measured.items():
                        figures.per_root[root].setdefault(name, []).append(value)
                    if key in measured:
                        values.append(measured[key])
                figures.rounds[-1][root] = statistics.median(values)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures
