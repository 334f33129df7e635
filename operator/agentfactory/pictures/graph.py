"""The task DAG as a picture: one box per task, coloured by its phase, an arrow from each
dependency to the task that waits for it, columns by depth (a task sits right of everything
it depends on). Plain SVG, so a browser, a PR comment or a file viewer shows it as it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from agentfactory.core.phases import Phase

#: A colour per phase, by what a person should do: grey waits, blue works, amber asks for a
#: person, green is done, orange and red stopped.
COLOURS: dict[Phase, str] = {
    Phase.PENDING: "#d1d5db", Phase.QUEUED: "#cbd5e1", Phase.PLANNING: "#93c5fd",
    Phase.PLAN_REVIEW: "#93c5fd", Phase.IMPLEMENTING: "#60a5fa", Phase.CI: "#60a5fa",
    Phase.CODE_REVIEW: "#93c5fd", Phase.AWAITING_APPROVAL: "#fbbf24", Phase.MERGING: "#a5b4fc",
    Phase.MERGED: "#22c55e", Phase.NEEDS_ATTENTION: "#f97316", Phase.FAILED: "#ef4444",
    Phase.CANCELLED: "#9ca3af",
}  # fmt: skip
WIDTH, HEIGHT, GAP_X, GAP_Y, MARGIN = 220, 58, 90, 26, 24


@dataclass(frozen=True)
class TaskNode:
    """A task as the picture shows it."""

    name: str
    phase: Phase
    depends_on: tuple[str, ...] = ()
    detail: str = ""
    """A second line under the phase: the stage and attempt, or what it waits for."""
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class _Layout:
    nodes: dict[str, TaskNode]
    depth: dict[str, int] = field(default_factory=dict)

    def depth_of(self, name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in self.depth:
            return self.depth[name]
        deps = [d for d in self.nodes[name].depends_on if d in self.nodes and d not in seen]
        found = 1 + max((self.depth_of(d, seen | {name}) for d in deps), default=-1)
        self.depth[name] = found
        return found


def positions(nodes: list[TaskNode]) -> dict[str, tuple[int, int]]:
    """Each task's box corner: its column is its depth (a cycle is cut where it closes)."""
    layout = _Layout({node.name: node for node in nodes})
    columns: dict[int, list[str]] = {}
    for name in sorted(layout.nodes):
        columns.setdefault(layout.depth_of(name), []).append(name)
    return {name: (MARGIN + column * (WIDTH + GAP_X), MARGIN + row * (HEIGHT + GAP_Y))
            for column, names in columns.items() for row, name in enumerate(names)}  # fmt: skip


def task_graph_svg(nodes: list[TaskNode], title: str = "tasks") -> str:
    """The SVG picture of *nodes*, with a legend of the phases shown."""
    at = positions(nodes)
    right = max((x + WIDTH for x, _ in at.values()), default=MARGIN) + MARGIN
    bottom = max((y + HEIGHT for _, y in at.values()), default=MARGIN) + MARGIN
    shown = [phase for phase in Phase if any(node.phase == phase for node in nodes)]
    width, height = max(right, 160 * max(1, len(shown)) + MARGIN), bottom + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" role="img">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"'
        ' markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"'
        ' fill="#475569"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for node in nodes:
        for dep in node.depends_on:
            if dep not in at:
                continue
            (x1, y1), (x2, y2) = at[dep], at[node.name]
            start, end = (x1 + WIDTH, y1 + HEIGHT // 2), (x2, y2 + HEIGHT // 2)
            bend = (start[0] + end[0]) // 2
            parts.append(
                f'<path d="M {start[0]} {start[1]} C {bend} {start[1]} {bend} {end[1]}'
                f' {end[0]} {end[1]}" fill="none" stroke="#475569" stroke-width="1.5"'
                ' marker-end="url(#arrow)"/>'
            )
    for node in sorted(nodes, key=lambda n: n.name):
        x, y = at[node.name]
        colour = COLOURS[node.phase]
        second = f"{node.phase}" + (f" · {node.detail}" if node.detail else "")
        parts += [
            f'<g class="task" data-task="{escape(node.name)}" data-phase="{node.phase}">',
            f'<rect x="{x}" y="{y}" width="{WIDTH}" height="{HEIGHT}" rx="8" fill="{colour}"'
            ' stroke="#334155" stroke-width="1"/>',
            f'<text x="{x + 10}" y="{y + 22}" font-size="14" font-weight="bold"'
            f' fill="#0f172a">{escape(_fit(node.name, 26))}</text>',
            f'<text x="{x + 10}" y="{y + 42}" font-size="12" fill="#0f172a">'
            f"{escape(_fit(second, 32))}</text>",
            "</g>",
        ]
    for index, phase in enumerate(shown):
        x = MARGIN + index * 160
        parts += [
            f'<rect x="{x}" y="{bottom + 8}" width="14" height="14" rx="3"'
            f' fill="{COLOURS[phase]}" stroke="#334155"/>',
            f'<text x="{x + 20}" y="{bottom + 20}" font-size="12" fill="#0f172a">{phase}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _fit(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
