"""The forge a factory's repository calls for, from its spec and its credentials Secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.github import github_repository
from agentfactory.forge.git import ForgeError, GitForge
from agentfactory.forge.github import GitHubApp, GitHubForge

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.factory import Repository


def build_forge(repository: Repository, workdir: Path, secret: dict[str, str]) -> GitForge:
    """`GitHubForge` for a GitHub repository with App credentials, else `GitForge` (with the
    Secret's token, if any). *secret* is the credentials Secret's decoded data. Raises
    ForgeError naming the missing key or the bad URL."""
    creds = repository.credentials
    app = creds.github_app if creds is not None else None
    if repository.forge == "github" and app is not None:
        keys = (app.app_id_key, app.installation_id_key, app.private_key_key)
        missing = [key for key in keys if not secret.get(key, "").strip()]
        if missing:
            raise ForgeError(
                f"Secret '{app.secret_name}' has no {', '.join(missing)}; add the GitHub App's"
                " id, installation id and private key"
            )
        try:
            target = github_repository(repository.url)
            installation = int(secret[app.installation_id_key].strip())
        except ValueError as exc:
            raise ForgeError(f"{exc}") from None
        github = GitHubApp(target, secret[app.app_id_key].strip(), installation,
                           secret[app.private_key_key])  # fmt: skip
        return GitHubForge.at(github, workdir, repository.base_branch)
    token = secret.get(creds.token.key) if creds is not None and creds.token else None
    return GitForge(remote=repository.url, workdir=workdir, base_branch=repository.base_branch,
                    token=token)  # fmt: skip
