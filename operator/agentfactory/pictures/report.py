"""A run as one self-contained HTML page: the task graph, then per task a timeline of its
phases, what each stage did (plan, patches with their diffs, checks, review findings, the
escalation), and what it used (tokens, cost). `agentfactory local` writes it at the end of a
run; a browser opens it without a server or a network."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from itertools import pairwise
from typing import TYPE_CHECKING

from agentfactory.pictures.graph import COLOURS, TaskNode, task_graph_svg

if TYPE_CHECKING:
    from datetime import datetime

    from agentfactory.core.task import AgentTaskStatus

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #0f172a; max-width: 1200px; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #cbd5e1; padding: 4px 10px; text-align: left; vertical-align: top; }
.phase { padding: 2px 8px; border-radius: 6px; font-size: 0.85em; }
.timeline { display: flex; height: 22px; margin: 0.5em 0; border: 1px solid #cbd5e1; }
.timeline div { height: 100%; min-width: 3px; }
.task { border-top: 2px solid #e2e8f0; margin-top: 2em; }
pre.diff { background: #f8fafc; padding: 8px; overflow-x: auto; font-size: 12px; }
.add { color: #166534; background: #dcfce7; }
.del { color: #991b1b; background: #fee2e2; }
.finding { margin: 0.2em 0; }
"""


@dataclass(frozen=True)
class TaskRecord:
    """A task as the report shows it."""

    name: str
    goal: str
    status: AgentTaskStatus
    depends_on: tuple[str, ...] = ()
    diffs: dict[str, str] = field(default_factory=dict)
    """Each implementer attempt's patch, by the attempt's name."""


def task_node(name: str, status: AgentTaskStatus, depends_on: tuple[str, ...]) -> TaskNode:
    """The task as the graph shows it: its phase, and its merge or its stage and attempt."""
    detail = f"{status.stage}#{status.attempt}" if status.stage and status.attempt else ""
    if status.merged_sha:
        detail = status.merged_sha[:12]
    return TaskNode(name=name, phase=status.phase, depends_on=depends_on, detail=detail,
                    tokens=status.usage.total_tokens, cost_usd=status.usage.cost_usd)  # fmt: skip


def node_of(record: TaskRecord) -> TaskNode:
    return task_node(record.name, record.status, record.depends_on)


def run_report(records: list[TaskRecord], *, title: str, now: datetime) -> str:
    """The whole page."""
    graph = task_graph_svg([node_of(r) for r in records], title=title)
    total_cost = sum(r.status.usage.cost_usd for r in records)
    total_tokens = sum(r.status.usage.total_tokens for r in records)
    rows = "".join(
        f'<tr><td><a href="#task-{escape(r.name)}">{escape(r.name)}</a></td>'
        f"<td>{_phase(r.status)}</td><td>{r.status.total_attempts}</td>"
        f"<td>{r.status.usage.total_tokens:,}</td><td>${r.status.usage.cost_usd:.4f}</td>"
        f"<td>{_took(r.status)}</td><td>{escape((r.status.merged_sha or '')[:12])}</td></tr>"
        for r in records
    )
    sections = "".join(_task(r) for r in records)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{len(records)} tasks · {total_tokens:,} tokens ·"
        f" ${total_cost:.4f} · written {now:%Y-%m-%d %H:%M:%S %Z}</p>\n"
        f'<section id="graph">{graph}</section>\n'
        '<table id="summary"><tr><th>task</th><th>phase</th><th>attempts</th><th>tokens</th>'
        f"<th>cost</th><th>took</th><th>merged</th></tr>{rows}</table>\n"
        f"{sections}</body></html>\n"
    )


def _phase(status: AgentTaskStatus) -> str:
    return (f'<span class="phase" style="background:{COLOURS[status.phase]}">'
            f"{status.phase}</span>")  # fmt: skip


def _took(status: AgentTaskStatus) -> str:
    if len(status.history) < 2:
        return "-"
    seconds = (status.history[-1].time - status.history[0].time).total_seconds()
    return f"{seconds:.0f}s"


def _timeline(status: AgentTaskStatus) -> str:
    """A bar per phase the task was in, as wide as the time it spent there."""
    history = status.history
    if not history:
        return ""
    spans = [(h.to, (n.time - h.time).total_seconds()) for h, n in pairwise(history)]
    total = sum(seconds for _, seconds in spans) or 1.0
    bars = "".join(
        f'<div style="width:{100 * seconds / total:.2f}%;background:{COLOURS[phase]}"'
        f' title="{phase}: {seconds:.0f}s"></div>'
        for phase, seconds in spans
    )
    entries = "".join(
        f"<tr><td>+{(h.time - history[0].time).total_seconds():.0f}s</td><td>{h.from_} →"
        f" {h.to}</td><td>{escape(h.reason)}</td><td>{escape(h.pod or '')}</td>"
        f"<td>{escape(h.message[:400])}</td></tr>"
        for h in history
    )
    head = "<tr><th>when</th><th>move</th><th>why</th><th>attempt</th><th>what</th></tr>"
    return f'<div class="timeline">{bars}</div><table class="history">{head}{entries}</table>'


def _task(record: TaskRecord) -> str:
    status = record.status
    parts = [
        f'<section class="task" id="task-{escape(record.name)}">',
        f"<h2>{escape(record.name)} {_phase(status)}</h2>",
        f'<p class="goal">{escape(record.goal)}</p>',
    ]
    if status.message:
        parts.append(f'<p class="message">{escape(status.message)}</p>')
    parts += ["<h3>Timeline</h3>", _timeline(status)]
    if status.plan is not None:
        steps = "".join(f"<li>{escape(step)}</li>" for step in status.plan.steps)
        parts += ["<h3>Plan</h3>", f"<p>{escape(status.plan.summary)}</p><ol>{steps}</ol>"]
    if status.implementation is not None:
        note = status.implementation
        checks = ", ".join(note.checks) or "none"
        parts += ["<h3>Implementation</h3>",
                  f"<p>{escape(note.summary)}</p><p>checks the implementer ran: {escape(checks)}"
                  "</p>"]  # fmt: skip
    if status.ci is not None:
        failed = "".join(f"<li>{escape(c.name)}</li>" for c in status.ci.failed_checks)
        parts += ["<h3>CI</h3>",
                  f'<p class="ci">{status.ci.state} on {status.ci.head_sha[:12]}</p>'
                  + (f"<ul>{failed}</ul>" if failed else "")]  # fmt: skip
    if status.last_review is not None:
        review = status.last_review
        findings = "".join(
            f'<li class="finding">{escape(f.severity)}: {escape(f.message)}'
            f"{' (' + escape(f.file) + ')' if f.file else ''}</li>"
            for f in review.findings
        )
        said = f"<p>{review.stage} #{review.attempt}: {review.verdict}</p><ul>{findings}</ul>"
        parts += ["<h3>Review</h3>", said]
    if status.escalation is not None and status.escalation.rules:
        esc = status.escalation
        matched = "".join(f"<li>{escape(m.rule)}: {escape(m.file or '')}</li>"
                          for m in esc.matches)  # fmt: skip
        approved = f"approved by {escape(esc.approved_by)}" if esc.approved_by else "not approved"
        parts += ["<h3>Escalation</h3>",
                  f"<p>{escape(', '.join(esc.rules))}: {escape(esc.reason)}; {approved}</p>"
                  f"<ul>{matched}</ul>"]  # fmt: skip
    for attempt, diff in record.diffs.items():
        parts += [f"<h3>Patch of {escape(attempt)}</h3>", _diff(diff)]
    usage = status.usage
    parts += [
        "<h3>Usage</h3>",
        f'<p class="usage">{usage.input_tokens:,} input, {usage.output_tokens:,} output,'
        f" {usage.cache_read_tokens:,} cache read, {usage.cache_creation_tokens:,} cache write"
        f" tokens · ${usage.cost_usd:.4f}</p>",
        "</section>\n",
    ]
    return "\n".join(parts)


def _diff(diff: str) -> str:
    lines = []
    for line in diff.splitlines()[:2000]:
        kind = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")  # fmt: skip
        text = escape(line)
        lines.append(f'<span class="{kind}">{text}</span>' if kind else text)
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"
