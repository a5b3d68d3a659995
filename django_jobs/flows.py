"""Flows: parent jobs that wait for their children (docs/flows.md).

A flow is a tree of jobs, on any queues. :meth:`Flow.enqueue` creates the whole tree in one
script call (all of it or nothing). A job with children waits in ``waiting_children`` and
becomes ``waiting`` when its last child has ended; inside it,
:meth:`JobContext.children_results() <django_jobs.tasks.JobContext.children_results>` returns
what each child returned. :func:`chain` and :func:`chord` build the common shapes.

>>> flow = Flow(store.s(7), children=[optimize.s(7), check.s(7).on_failure("ignore")])  # doctest: +SKIP
>>> flow.enqueue().result.state  # doctest: +SKIP
'waiting_children'
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django_jobs.engine.protocol import JobState
from django_jobs.engine.record import JobView, decode_payload
from django_jobs.exceptions import InvalidArguments, InvalidJob
from django_jobs.steps import (
    POLICIES,
    RECEIVES,
    ChildrenResults,
    ChildResult,
    Signature,
    children_results,
)
from django_jobs.tasks import JobResult, JobTask, jobs_backend

#: The most jobs one flow may have (one script call creates them all).
MAX_FLOW_JOBS = 10_000


def signature(task: JobTask, *args: Any, **kwargs: Any) -> Signature[JobTask]:
    """Return a :class:`Signature` of ``task`` (what ``task.s(*args, **kwargs)`` does)."""
    if not isinstance(task, JobTask):
        raise InvalidJob(f"A flow step must be a @job, not {type(task).__name__}.")
    return Signature(task=task, args=tuple(args), kwargs=dict(kwargs))


def _as_signature(item: Signature[JobTask] | JobTask) -> Signature[JobTask]:
    if isinstance(item, Signature):
        return item
    if isinstance(item, JobTask):
        return signature(item)
    raise InvalidJob(f"A flow step must be a job signature (my_job.s(...)) or a Flow, not {type(item).__name__}.")


class Flow:
    """A parent job and its children (each a signature or a nested :class:`Flow`).

    >>> Flow(store.s(7), children=[optimize.s(7), Flow(report.s(), children=[scan.s(7)])])  # doctest: +SKIP
    """

    __slots__ = ("children", "job")

    def __init__(self, job: Signature[JobTask] | JobTask, children: Iterable[Flow | Signature[JobTask] | JobTask] = ()) -> None:
        self.job = _as_signature(job)
        self.children: tuple[Flow, ...] = tuple(c if isinstance(c, Flow) else Flow(c) for c in children)

    def __repr__(self) -> str:
        return f"Flow({self.job.task.module_path}, children={list(self.children)!r})"

    def walk(self) -> Iterable[Flow]:
        """Yield this node and every node below it, parents before their children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def enqueue(self) -> FlowResult:
        """Create the whole flow at once (all of it or nothing) and return its results' handles.

        Raises:
            InvalidJob: a job's arguments do not fit it, are not JSON, or a parent is delayed.
        """
        from django_jobs.engine import get_engine
        from django_jobs.engine.queue import FlowJob
        from django_jobs.tasks import ms_to_datetime

        # Each occurrence of a node is a job of its own (a Flow object may be used twice).
        nodes: list[tuple[Flow, int]] = []  # (node, index of its parent in nodes; -1 for the root)
        stack: list[tuple[Flow, int]] = [(self, -1)]
        while stack:
            node, parent_index = stack.pop()
            nodes.append((node, parent_index))
            if len(nodes) > MAX_FLOW_JOBS:
                raise InvalidJob(f"A flow has at most {MAX_FLOW_JOBS:,} jobs; this one has more.")
            stack.extend((child, len(nodes) - 1) for child in reversed(node.children))
        children_of: list[list[int]] = [[] for _ in nodes]
        for index, (_node, parent_index) in enumerate(nodes):
            if parent_index >= 0:
                children_of[parent_index].append(index)
        import os

        from django_jobs.engine.keys import new_job_id

        prepared: list[tuple[Any, JobResult]] = []
        engine = get_engine()
        flow_key = f"flow:{os.urandom(8).hex()}"  # the jobs of a sharded queue share one shard (one slot)
        for node, _parent_index in nodes:
            sig = node.job
            _check_arguments(sig, has_children=bool(node.children))
            backend = jobs_backend(sig.task.get_backend())
            if backend is None:
                used = type(sig.task.get_backend()).__name__
                raise InvalidJob(f"Flows need django_jobs' backend; {sig.task.module_path!r} uses {used}.")
            placed = engine.place(sig.task.queue_name, new_job_id(), flow_key) if engine.shard_count(sig.task.queue_name) > 1 else None
            new, result = backend._prepare(sig.task, sig.args, sig.kwargs, placed)
            if node.children and (new.run_at_ms or new.delay_ms):
                raise InvalidJob(
                    f"{sig.task.module_path!r} has children, so it runs when they are done: it cannot also have "
                    "a delay or run_after. Delay its children instead."
                )
            if sig.receives:
                new = replace(new, data=decode_payload(new.data).with_options(cr=sig.receives))
            prepared.append((new, result))
        cid = prepared[0][0].correlation_id
        rows: list[FlowJob] = []
        for index, (node, parent_index) in enumerate(nodes):
            new, result = prepared[index]
            parent_id = prepared[parent_index][0].id if parent_index >= 0 else new.parent_id
            new = replace(new, correlation_id=cid, parent_id=parent_id)
            rows.append(
                FlowJob(
                    queue=result.queue,
                    job=new,
                    parent_queue=prepared[parent_index][1].queue if parent_index >= 0 else "",
                    policy=POLICIES[node.job.failure] if parent_index >= 0 else "",
                    keep_ms=int(engine.settings.keep(result.queue, "FAILED")[0] * 1000),
                    children=tuple(
                        (prepared[c][1].queue, prepared[c][0].id, nodes[c][0].job.task.module_path) for c in children_of[index]
                    ),
                )
            )
            object.__setattr__(result, "state", JobState.WAITING_CHILDREN if node.children else result.state)
            object.__setattr__(result, "correlation_id", cid)
            object.__setattr__(result, "parent_id", parent_id)
        stored = engine.enqueue_flow(rows)
        from django_jobs.compat import task_enqueued

        now = ms_to_datetime(stored.enqueued_ms)  # Redis' time, stored in every job of the flow
        for _new, result in prepared:
            object.__setattr__(result, "enqueued_at", now)
            task_enqueued.send(type(result.task.get_backend()), task_result=result)

        def build(index: int) -> FlowResult:
            return FlowResult(result=prepared[index][1], children=tuple(build(c) for c in children_of[index]))

        return build(0)

    async def aenqueue(self) -> FlowResult:
        """Create the whole flow from async code (see :meth:`enqueue`)."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.enqueue, thread_sensitive=False)()


def _check_arguments(sig: Signature[JobTask], *, has_children: bool) -> None:
    """Fail now, in the caller, when the arguments cannot fit the job's function."""
    if sig.receives and not has_children:
        raise InvalidJob(f"{sig.task.module_path!r} receives its children's results but has no children.")
    extra: list[Any] = [None] if sig.task.takes_context else []
    if sig.receives:
        extra.append(None)
    try:
        inspect.signature(sig.task.func).bind(*extra, *sig.args, **sig.kwargs)
    except TypeError as exc:
        got = "its children's results and " if sig.receives else ""
        raise InvalidArguments(f"The arguments of {sig.task.module_path!r} in this flow ({got}{sig.args!r}, {sig.kwargs!r}) do not fit it: {exc}.") from None


@dataclass(frozen=True, slots=True)
class FlowResult:
    """The handles of an enqueued flow: ``result`` of its parent job, ``children`` below it."""

    result: JobResult
    children: tuple[FlowResult, ...] = ()

    @property
    def id(self) -> str:
        """The parent job's id."""
        return self.result.id

    def wait(self, timeout: float = 30.0) -> JobResult:
        """Block until the parent job has finished (see :meth:`JobResult.wait`) and return it."""
        return self.result.wait(timeout)


def chain(*steps: Signature[JobTask] | JobTask) -> Flow:
    """Run ``steps`` one after another; each gets the previous one's return value as first argument.

    A step that fails (after its retries) fails the rest of the chain.

    >>> chain(fetch.s(url), parse.s(), store.s(table="pages")).enqueue()  # doctest: +SKIP
    """
    if not steps:
        raise InvalidJob("chain() needs at least one step.")
    node = Flow(_as_signature(steps[0]))
    for step in steps[1:]:
        node = Flow(replace(_as_signature(step), receives="one"), children=[node])
    return node


def chord(group: Sequence[Signature[JobTask] | JobTask | Flow], callback: Signature[JobTask] | JobTask) -> Flow:
    """Run ``group`` in parallel, then ``callback`` with the list of their return values first.

    The list is in the order of ``group``; a child whose failure is ignored gives ``None``, a
    removed one is left out.

    >>> chord([resize.s(1, 100), resize.s(1, 800)], publish.s(1)).enqueue()  # doctest: +SKIP
    """
    if not group:
        raise InvalidJob("chord() needs at least one job in its group.")
    return Flow(replace(_as_signature(callback), receives="list"), children=list(group))


# -- reading a flow -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowNode:
    """One job of a flow tree, for display (:func:`flow_tree`)."""

    id: str
    queue: str
    name: str
    #: The job's state; ``""`` when its hash is gone (trimmed after it finished).
    state: str
    #: Its failure policy toward its parent (``fail``, ``ignore``, ``remove``; ``""`` for the root).
    failure: str = ""
    children: tuple[FlowNode, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the tree as plain data (for JSON)."""
        return {
            "id": self.id, "queue": self.queue, "name": self.name, "state": self.state, "failure": self.failure,
            "children": [c.as_dict() for c in self.children],
        }

    def lines(self, *, mark: str = "") -> list[str]:
        """Return the tree as indented text lines, marking job ``mark`` with ``<-``."""
        out: list[str] = []

        def add(node: FlowNode, indent: str, last: bool, top: bool) -> None:
            branch = "" if top else ("└─ " if last else "├─ ")
            policy = f" on_failure={node.failure}" if node.failure and node.failure != "fail" else ""
            here = "  <-" if node.id == mark else ""
            out.append(f"{indent}{branch}{node.name} {node.id} [{node.queue}] {node.state or 'deleted'}{policy}{here}")
            below = indent if top else indent + ("   " if last else "│  ")
            for n, child in enumerate(node.children):
                add(child, below, n == len(node.children) - 1, False)

        add(self, "", True, True)
        return out


def flow_tree(job_id: str, *, queues: Iterable[str] | None = None) -> FlowNode | None:
    """Return the flow that job ``job_id`` belongs to, from its root down, with each job's state.

    Returns ``None`` when the job does not exist. A job outside flows is a tree of one.

    >>> print("\\n".join(flow_tree(result.id).lines()))  # doctest: +SKIP
    """
    from django_jobs.conf import get_settings
    from django_jobs.engine import get_engine

    engine = get_engine()
    names = list(queues or get_settings().queue_names)
    found = engine.find_job(job_id, names)
    if found is None:
        return None
    view = JobView.from_hash(found[0], job_id, found[1])
    seen = {job_id}
    while view.parent_base and view.parent_id and view.parent_id not in seen:
        above = engine.find_job(view.parent_id, names)
        if above is None:
            break
        seen.add(view.parent_id)
        view = JobView.from_hash(above[0], view.parent_id, above[1])
    return _subtree(engine, view, "")


_CODE_TO_POLICY: dict[str, str] = {str(code): name for name, code in POLICIES.items()}


def _subtree(engine: Any, view: JobView, failure: str) -> FlowNode:
    kids = view.children
    hashes = engine.get_jobs([(q, i) for _b, i, q, _n in kids])
    children = tuple(
        _subtree(engine, child, _CODE_TO_POLICY.get(child.policy, "fail")) if h
        else FlowNode(id=i, queue=q, name=n, state="")
        for (_b, i, q, n), h in zip(kids, hashes)
        for child in (JobView.from_hash(q, i, h),)
    )
    return FlowNode(id=view.id, queue=view.queue, name=view.name, state=view.state, failure=failure, children=children)


__all__ = [
    "POLICIES",
    "RECEIVES",
    "ChildResult",
    "ChildrenResults",
    "Flow",
    "FlowNode",
    "FlowResult",
    "Signature",
    "chain",
    "children_results",
    "chord",
    "flow_tree",
    "signature",
]
