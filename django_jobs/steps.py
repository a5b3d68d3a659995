"""The pieces of a flow the job API hands out: a step and what a parent sees of its children.

``my_job.s(1, 2)`` returns a :class:`Signature` (a job with its arguments, not enqueued yet);
inside a flow parent, ``context.children_results()`` returns :class:`ChildrenResults`. They
live below :mod:`django_jobs.tasks` (which hands them out) and :mod:`django_jobs.flows` (which
builds and enqueues flows from them, and re-exports them). See docs/flows.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from django_jobs.engine.protocol import FlowPolicy, JobState
from django_jobs.engine.record import JobView
from django_jobs.exceptions import InvalidJob

__all__ = ["POLICIES", "RECEIVES", "ChildResult", "ChildrenResults", "Signature", "children_results"]

#: Failure policies of a child toward its parent, and their code in the job hash ('fp').
POLICIES = {"fail": FlowPolicy.FAIL, "ignore": FlowPolicy.IGNORE, "remove": FlowPolicy.REMOVE}
#: How a parent receives its children's return values as its first argument ('cr' payload option).
RECEIVES = ("", "one", "list")


class Named(Protocol):
    """A job as the flow pieces see it (a :class:`~django_jobs.tasks.JobTask`): it has a full name."""

    @property
    def module_path(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Signature[T: Named]:
    """A job with its arguments, not enqueued yet: one node of a flow (``my_job.s(1, 2)``).

    ``failure`` is what the parent does when this job ends failed or cancelled (after its
    retries): ``"fail"`` (the default: the parent fails, its other unfinished children are
    cancelled), ``"ignore"`` (the parent still runs and sees the failure) or ``"remove"``
    (the parent runs as if this child did not exist).
    """

    task: T
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    failure: str = "fail"
    #: ``"one"``: the job gets its only child's return value as first argument (a chain step);
    #: ``"list"``: the list of its children's return values (a chord's callback).
    receives: str = ""

    def on_failure(self, policy: str) -> Signature[T]:
        """Return a copy whose failure makes the parent ``"fail"``, ``"ignore"`` it or ``"remove"`` it."""
        if policy not in POLICIES:
            raise InvalidJob(f"on_failure({policy!r}): the policy must be one of {', '.join(map(repr, POLICIES))}.")
        return replace(self, failure=policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildResult:
    """How one child of a parent job ended, as the parent sees it."""

    id: str
    name: str
    queue: str
    #: ``completed``, ``failed`` or ``cancelled`` (the last two only with the ``ignore`` policy).
    state: str
    #: The child's return value (``None`` unless it completed).
    value: Any = None

    @property
    def ok(self) -> bool:
        """True when the child completed."""
        return self.state == JobState.COMPLETED


class ChildrenResults(dict[str, ChildResult]):
    """The ended children of a parent job by id, in the order they were declared."""

    def by_name(self, job: Named | str) -> list[ChildResult]:
        """Return the children that ran ``job`` (a job, its full name, or its function's name)."""
        name = job if isinstance(job, str) else job.module_path
        return [c for c in self.values() if c.name == name or c.name.rsplit(".", 1)[-1] == name]

    def values_list(self) -> list[Any]:
        """Return the children's return values in declaration order (``None`` for a failed one)."""
        return [c.value for c in self.values()]


def children_results(queue: str, job_id: str) -> ChildrenResults:
    """Return how each child of job ``job_id`` of ``queue`` ended (see :class:`ChildrenResults`).

    Children removed by the ``remove`` policy and children not ended yet are left out.
    """
    from django_jobs.engine import get_engine

    data = get_engine().get_job(queue, job_id) or {}
    return _children_results(data)


def _children_results(data: dict[str, str]) -> ChildrenResults:
    view = JobView.from_hash("", "", data)
    out = ChildrenResults()
    for _base, child_id, child_queue, name in view.children:
        ended = view.child_ends.get(child_id)
        if ended is None or ended.get("s") == "removed":
            continue
        out[child_id] = ChildResult(id=child_id, name=name, queue=child_queue, state=ended.get("s", ""), value=ended.get("r"))
    return out
