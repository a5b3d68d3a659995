"""A job calling sys.exit() or raising KeyboardInterrupt on a real runworkers: recorded, logged, the worker lives on."""

from __future__ import annotations

import pytest

from tests.testapp import jobs_chaos, jobs_contract

pytestmark = pytest.mark.chaos


def test_a_job_raising_systemexit_or_keyboardinterrupt_fails_and_its_worker_process_keeps_running(chaos):
    sup = chaos.start("--processes=1", "--threads=1", "--grace=5", ready=1, env={"DJJ_LOG_LEVEL": "INFO"})
    [worker_pid] = chaos.wait_ready(sup, 1)
    exited = jobs_contract.exits.enqueue(2)
    interrupted = jobs_contract.interrupts.enqueue()
    for result, cls in ((exited, "builtins.SystemExit"), (interrupted, "builtins.KeyboardInterrupt")):
        chaos.wait_state(result.id, "failed", timeout=20)
        result.refresh()
        assert [e.exception_class_path for e in result.errors] == [cls]
        assert cls.split(".")[1] in result.errors[0].traceback
        sup.wait_output(f"{result.id} failed after 1 attempt(s)", timeout=10)  # logged, with its traceback
    after = jobs_chaos.quick.enqueue("after")
    chaos.wait_state(after.id, "completed", timeout=20)
    assert worker_pid in sup.children()  # the same worker process ran it: nothing was restarted
    assert "restarting" not in sup.output
    assert sup.stop() == 0
    chaos.check_invariants()
