"""The handoff contract of one stage attempt, built from the task, its factory and its status.

Pure, so the local driver and the operator hand agents identical contracts. Limits follow
the factory (turns, deadline) and what is left of the task's budget (tokens, dollars), so an
attempt can never spend more than the task has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.handoff import ROLE_OF_STAGE, HandoffContract, Limits, PlanOutput
from agentfactory.core.phases import Stage

if TYPE_CHECKING:
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus


def contract_for(
    *,
    task: str,
    spec: AgentTaskSpec,
    factory: FactorySpecSpec,
    status: AgentTaskStatus,
    stage: Stage,
    base_sha: str,
    feedback: str | None = None,
) -> HandoffContract:
    """The contract for *stage* of *task* as things stand in *status*."""
    role = ROLE_OF_STAGE[stage]
    override = factory.agents.roles.of(role.value)
    budget, used = factory.budget, status.usage
    return HandoffContract(
        task=task,
        role=role,
        goal=spec.goal,
        acceptance_criteria=spec.acceptance_criteria,
        non_goals=spec.non_goals,
        context=spec.context,
        scope=spec.scope.paths,
        checks=[*factory.checks, *spec.checks],
        stop_when=spec.stop_when,
        protected_paths=factory.guardrails.protected,
        base_sha=base_sha,
        model=override.model or factory.agents.model,
        instructions=override.instructions,
        limits=Limits(
            max_turns=override.max_turns or factory.agents.max_turns,
            max_tokens=max(1, budget.max_tokens_per_task - used.total_tokens),
            max_cost_usd=max(0.000001, budget.max_cost_usd_per_task - used.cost_usd),
            deadline_seconds=session_deadline(factory.sandbox.timeout_seconds),
        ),
        feedback=feedback if feedback is not None else status.feedback,
        plan=_plan(status),
        implementation=status.implementation if stage == Stage.CODE_REVIEW else None,
        proof=status.ci.proof if stage == Stage.CODE_REVIEW and status.ci else None,
    )


def session_deadline(pod_seconds: int) -> float:
    """How long an agent's session may run in a pod with *pod_seconds* to live: a tenth less
    (at least a minute, at most five), kept for the checkout before it and the checks and the
    result after it, so that the session ends with a result (and its usage) before the pod is
    killed without one."""
    reserve = min(max(pod_seconds / 10, 60), 300)
    return max(pod_seconds - reserve, pod_seconds / 2)


def _plan(status: AgentTaskStatus) -> PlanOutput | None:
    plan = status.plan
    if plan is None:
        return None
    steps = plan.steps or [plan.summary]
    return PlanOutput(summary=plan.summary, steps=steps, files_in_scope=plan.files,
                      risky_interfaces=plan.risky_interfaces,
                      tests_to_add_first=plan.tests_to_add_first,
                      open_questions=plan.open_questions)  # fmt: skip
