"""The task's record on its forge, for forges that have one: the pull request (opened once
the branch is pushed, labelled with the phase, commented with the plan, reviews and CI),
people's reviews of its head (an approval, or a request for changes), and checks the forge
runs on the head.

Everything here asks the forge registry for a capability; a forge without it (a plain git
remote) skips that part.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agentfactory.core.forges import ForgeError
from agentfactory.core.github import ci_verdict, pr_comments, pull_request_body
from agentfactory.core.observations import HumanAction, PullRequestOpened
from agentfactory.core.phases import Phase, Stage
from agentfactory.core.pipeline import CHANGEABLE
from agentfactory.forge.registry import approvals, checks, pull_requests
from agentfactory.stages import change_title

if TYPE_CHECKING:
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import CIFinished, Observation
    from agentfactory.core.pipeline import Decision
    from agentfactory.core.work import AwaitChecks
    from agentfactory.loop.ports import Forges, Record

log = logging.getLogger("agentfactory.loop")
#: Phases whose pull request is closed for good (or never needed one).
CLOSED = (Phase.MERGED, Phase.CANCELLED, Phase.FAILED)


@dataclass
class ForgeSync:
    """Keeps tasks and their forge's record in step."""

    forges: Forges
    poll_seconds: float = 0
    """How often one task's checks or reviews are read at most (passes come on every event;
    the forge's own changes arrive only by asking)."""
    _polled: dict[tuple[str, str], float] = field(default_factory=dict)

    def due(self, key: str, what: str) -> bool:
        """Whether the forge may be asked about *what* of *key* again."""
        now, last = time.monotonic(), self._polled.get((key, what))
        if last is not None and now - last < self.poll_seconds:
            return False
        self._polled[(key, what)] = now
        return True

    async def news(self, task: Record, factory: FactorySpecSpec) -> Observation | None:
        """A task whose branch is pushed has its pull request (opened here when the status
        records none: after the patch is accepted, or after a crash that came between); an
        approving review of the exact head by one of `escalation.approvers` approves a task
        waiting for a person, as the annotation would; and a request for changes on it sends
        the patch back to the implementer with the review."""
        status, spec = task.status, task.spec
        if spec is None or status.phase in CLOSED or not status.branch or not status.head_sha:
            return None
        forge = await self.forges.forge(task.factory, factory)
        if (prs := pull_requests(forge)) is None:
            return None
        if status.pull_request is None:
            await asyncio.to_thread(forge.push_branch, status.branch, status.head_sha)
            title, body = change_title(task.name, spec), pull_request_body(task.name, spec)
            pr = await asyncio.to_thread(prs.ensure_pull_request, status.branch, title, body)
            return PullRequestOpened(number=pr.number, url=pr.url)
        changeable = status.phase in CHANGEABLE and status.resume_from != Stage.PLAN_REVIEW
        people = approvals(forge)
        if people is None or not (changeable or status.awaits_approval):
            return None
        if not self.due(task.name, "reviews"):
            return None
        number, approvers = status.pull_request.number, factory.escalation.approvers
        said = await asyncio.to_thread(people.reviews, number, status.head_sha, approvers)
        if changeable and said.changes is not None:
            login, asked = said.changes
            return HumanAction(action="request-changes", by=login, feedback=asked)
        if status.awaits_approval and said.approved:
            return HumanAction(action="approve", by=said.approved[0])
        return None

    async def checks(
        self, task: Record, factory: FactorySpecSpec, work: AwaitChecks
    ) -> CIFinished | None:
        """The required checks on the exact head, once the pull request is open (CI on a
        forge commonly runs on pull request events); None while they run."""
        status = task.status
        if status.pull_request is None or not self.due(task.name, "checks"):
            return None
        forge = checks(await self.forges.forge(task.factory, factory))
        if forge is None:
            return None  # the spec's validation makes forge checks mean a forge that has them
        found = await asyncio.to_thread(forge.checks, work.head_sha)
        since = status.last_transition_time or datetime.now(UTC)
        return ci_verdict(work.head_sha, list(work.required), found,
                          waited=datetime.now(UTC) - since,
                          timeout=timedelta(seconds=work.timeout_seconds))  # fmt: skip

    async def publish(
        self, task: Record, factory: FactorySpecSpec | None, decision: Decision,
        observation: Observation,
    ) -> None:  # fmt: skip
        """Mirror a task that moved on its pull request: the phase label, and the plan,
        review and CI comments. Best effort: the status is the record, and the next
        transition publishes again."""
        pr = decision.status.pull_request
        if factory is None or pr is None:
            return
        if not decision.transitions and not isinstance(observation, PullRequestOpened):
            return
        prs = pull_requests(await self.forges.forge(task.factory, factory))
        if prs is None:
            return
        status, escalation = decision.status, factory.escalation
        comments = pr_comments(status, escalation.notify.mention_on_pr, escalation.approvers)

        def publish() -> None:
            prs.label_phase(pr.number, status.phase.value)
            prs.comment_all(pr.number, comments)

        try:
            await asyncio.to_thread(publish)
        except ForgeError as exc:
            log.warning("%s: PR #%s not updated: %s", task.name, pr.number, exc)
