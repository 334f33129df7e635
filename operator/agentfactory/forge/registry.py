"""The forge registry: the one place that knows which forge a factory's `repository.forge`
names and what each forge can do.

A builder makes a forge from the factory's repository, the operator's working directory for
it and the credentials Secret's data. Capabilities are asked for by protocol
(`pull_requests(forge)`, `checks(forge)`, ...), so the loop never asks which kind of forge it
holds. To add a forge: write its module (implementing `core.forges.Forge` and the
capabilities it has) and register its builder below, or at run time with `register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory.core.forges import (
    Forge,
    ForgeError,
    HasApprovals,
    HasChecks,
    HasIssues,
    HasMergeQueue,
    HasPullRequests,
    HasSettings,
    VerifiesCredentials,
)
from agentfactory.forge.build import git_forge, github_forge

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from agentfactory.core.factory import Repository

    Builder = Callable[[Repository, Path, dict[str, str]], Forge]


@dataclass
class ForgeRegistry:
    """Builders by forge kind."""

    builders: dict[str, Builder] = field(default_factory=dict)

    def register(self, kind: str, builder: Builder) -> None:
        """Make *kind* (a `repository.forge` value) build with *builder*."""
        self.builders[kind] = builder

    def build(self, repository: Repository, workdir: Path, secret: dict[str, str]) -> Forge:
        """The forge *repository* names. ForgeError naming the missing key, the bad URL or
        the unknown kind."""
        builder = self.builders.get(repository.forge)
        if builder is None:
            known = ", ".join(sorted(self.builders))
            raise ForgeError(f"repository.forge: no forge {repository.forge!r} here; use one of"
                             f" {known}")  # fmt: skip
        return builder(repository, workdir, secret)


def pull_requests(forge: object) -> HasPullRequests | None:
    """*forge*, when it has pull requests."""
    return forge if isinstance(forge, HasPullRequests) else None


def checks(forge: object) -> HasChecks | None:
    """*forge*, when it reports checks on commits."""
    return forge if isinstance(forge, HasChecks) else None


def approvals(forge: object) -> HasApprovals | None:
    """*forge*, when people review pull requests on it."""
    return forge if isinstance(forge, HasApprovals) else None


def merge_queues(forge: object) -> HasMergeQueue | None:
    """*forge*, when it may have a merge queue of its own."""
    return forge if isinstance(forge, HasMergeQueue) else None


def issues(forge: object) -> HasIssues | None:
    """*forge*, when it has issues to take tasks from."""
    return forge if isinstance(forge, HasIssues) else None


def settings(forge: object) -> HasSettings | None:
    """*forge*, when its repository's settings can refuse a spec."""
    return forge if isinstance(forge, HasSettings) else None


def verifiable(forge: object) -> VerifiesCredentials | None:
    """*forge*, when its credentials can be tried."""
    return forge if isinstance(forge, VerifiesCredentials) else None


FORGES = ForgeRegistry({"git": git_forge, "github": github_forge})
"""The forges this operator knows."""


def build_forge(repository: Repository, workdir: Path, secret: dict[str, str]) -> Forge:
    """The forge *repository* names, from the default registry."""
    return FORGES.build(repository, workdir, secret)
