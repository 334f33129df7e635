"""Which replica acts: kopf peering, as the operator's own workers see it.

kopf pauses its watch streams and daemons when a peer with a higher priority is alive, but our
workers run passes of their own (on wake-ups and on a resync timer), which kopf does not know
about. So before a pass a worker asks `Leadership.active`, which reads the same peering object
kopf keeps alive and applies kopf's rule: a replica acts while no other live peer has the same
or a higher priority (equal priorities pause everyone, as in kopf).

The object is read at most once per `every` seconds, so a standby can act for that long after
a leader appears; status writes carry their resourceVersion, so in that window a stale replica
loses its write rather than doubling a transition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfactory.kube.client import Kube


def leads(peers: dict[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """Whether *identity* is the one active replica among *peers* (a peering object's
    status: identity -> {priority, lifetime, lastseen})."""
    if identity not in peers:
        return False  # kopf has not announced us yet: nobody else knows we exist
    for other, info in peers.items():
        if other == identity or not isinstance(info, dict):
            continue
        try:
            seen = datetime.fromisoformat(str(info["lastseen"]))
            alive = seen + timedelta(seconds=int(info.get("lifetime", 60))) > now
            rival = int(info.get("priority", 0)) >= priority
        except (KeyError, TypeError, ValueError):
            continue  # kopf skips peers it cannot read, and so do we
        if alive and rival:
            return False
    return True


@dataclass
class Leadership:
    """Whether this replica may act, from the peering object at *path* (None: standalone)."""

    kube: Kube | None
    path: str | None
    identity: str
    priority: int
    every: float = 5.0
    _checked: float = field(default=float("-inf"), init=False)
    _active: bool = field(default=False, init=False)

    @classmethod
    def standalone(cls) -> Leadership:
        """A replica without peers: always active."""
        return cls(kube=None, path=None, identity="", priority=0)

    async def active(self) -> bool:
        if self.kube is None or self.path is None:
            return True
        if time.monotonic() - self._checked >= self.every:
            obj = await self.kube.get(self.path)
            peers = (obj or {}).get("status") or {}
            self._active = leads(peers, self.identity, self.priority, datetime.now(UTC))
            self._checked = time.monotonic()
        return self._active
