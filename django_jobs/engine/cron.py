"""Cron: the scheduler's leader election and ticks (django_jobs/scheduler.py, docs/cron.md).

The key names are :class:`~django_jobs.engine.keys.CronKeys`; every change is a script
(``leader_acquire``, ``leader_renew``, ``cron_claim``, ``cron_done``, ``cron_pause``).
"""

from __future__ import annotations

from django_jobs.engine.keys import CronKeys
from django_jobs.engine.runner import ScriptRunner


class Cron(ScriptRunner):
    """Leader lease and schedule state."""

    def cron_keys(self) -> tuple[str, str, str]:
        """Return the names of the leader lease, the epoch counter and the schedules' state hash."""
        k = CronKeys.build(self.prefix)
        return k.leader, k.epoch, k.state

    def leader_acquire(self, holder: str, *, lease_ms: int) -> tuple[int, int, str]:
        """Try to become the scheduler leader; return (epoch or 0, Redis now ms, current leader value)."""
        leader, epoch, _ = self.cron_keys()
        got, now_ms, current = self._run("leader_acquire", (leader, epoch), (holder, lease_ms))
        return int(got), int(now_ms), str(current or "")

    def leader_renew(self, token: str, *, lease_ms: int) -> tuple[bool, int]:
        """Extend the lease held as ``token`` ("<epoch>|<holder>"); ``lease_ms=0`` resigns.

        Returns (still the leader, Redis now ms).
        """
        leader, _, _ = self.cron_keys()
        ok, now_ms = self._run("leader_renew", (leader,), (token, lease_ms))
        return bool(ok), int(now_ms)

    def leader(self) -> str:
        """Return the current leader value "<epoch>|<holder>" ('' when nobody leads)."""
        return str(self._call(self.client.get, self.cron_keys()[0]) or "")

    def cron_claim(self, token: str, name: str, slot_ms: int) -> int:
        """Claim tick ``slot_ms`` of schedule ``name``: 1 claimed, 0 fired already, 2 paused, -3 stale leader."""
        leader, _, state = self.cron_keys()
        return int(self._run("cron_claim", (leader, state), (token, name, slot_ms)))

    def cron_done(self, name: str, slot_ms: int, job_id: str) -> int:
        """Record that the job of tick ``slot_ms`` of ``name`` is enqueued."""
        return int(self._run("cron_done", (self.cron_keys()[2],), (name, slot_ms, job_id)))

    def cron_state(self) -> dict[str, str]:
        """Return the raw state hash of every schedule (see cron_claim.lua, cron_done.lua)."""
        return dict(self._call(self.client.hgetall, self.cron_keys()[2]))

    def cron_pause(self, name: str, paused: bool) -> bool:
        """Pause (``paused=True``) or resume schedule ``name`` for every supervisor.

        Ticks that fall while a schedule is paused are dropped (see cron_pause.lua). Returns
        False when the schedule was in that state already.
        """
        return bool(self._run("cron_pause", (self.cron_keys()[2],), (name, "1" if paused else "0")))

    def cron_triggered(self, name: str, job_id: str) -> None:
        """Record that schedule ``name`` was triggered by hand as job ``job_id`` (for the admin)."""
        self._call(self.client.hset, self.cron_keys()[2], mapping={f"{name}:trig": job_id})
