"""The operator's view of the cluster: the objects kopf's watches delivered, and the
operator's own writes.

kopf's watch streams feed it (no extra list requests), and every object the operator writes
goes in at once from the API's answer, so the next pass never acts on a status older than
the one it wrote. Of two versions of one object the newer resourceVersion wins: a watch
event that arrives after the operator's own write cannot roll the view back.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

from agentfactory.kube.pods import is_done

Key = tuple[str, str]
#: How many deleted objects the view remembers: far more than the stage pods in flight.
GONE = 10_000


def _version(obj: dict[str, Any]) -> int:
    raw = str(obj.get("metadata", {}).get("resourceVersion") or "0")
    return int(raw) if raw.isdigit() else 0


@dataclass
class View:
    """Objects by kind, then by (namespace, name)."""

    objects: dict[str, dict[Key, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    deleted: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """AgentTasks deleted, by namespace, as last seen: what they left on the forge goes too."""

    gone: OrderedDict[tuple[str, Key], None] = field(default_factory=OrderedDict)
    """The latest objects seen deleted (at most `GONE` of them), so a pod deleted before it
    finished is told apart from one never made without asking the API."""

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        self.gone.pop((kind, key), None)
        old = self.objects[kind].get(key)
        if old is None or _version(obj) >= _version(old):
            self.objects[kind][key] = obj

    def replace(self, kind: str, namespace: str, objects: list[dict[str, Any]]) -> None:
        """Make the namespace's objects of *kind* exactly *objects* (a fresh listing)."""
        for key in [k for k in self.objects[kind] if k[0] == namespace]:
            del self.objects[kind][key]
        for obj in objects:
            self.put(kind, obj)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        self.gone[kind, (namespace, name)] = None
        self.gone.move_to_end((kind, (namespace, name)))
        while len(self.gone) > GONE:
            self.gone.popitem(last=False)
        old = self.objects[kind].pop((namespace, name), None)
        if kind == "agenttasks" and old is not None:
            self.deleted[namespace].append(old)

    def take_deleted(self, namespace: str) -> list[dict[str, Any]]:
        """The AgentTasks deleted in *namespace* since the last call."""
        return self.deleted.pop(namespace, [])

    def was_deleted(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the object was seen deleted (by this process, lately) and not made again."""
        return (kind, (namespace, name)) in self.gone

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[kind].get((namespace, name))

    def in_namespace(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return [obj for (ns, _), obj in self.objects[kind].items() if ns == namespace]

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.objects["agenttasks"].values())

    def live_pods(self) -> int:
        return sum(1 for pod in self.objects["pods"].values() if not is_done(pod))
