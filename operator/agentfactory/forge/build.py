"""Builders of the forges this operator knows, from a factory's repository and its credentials
Secret (registered in `agentfactory.forge.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.forges import ForgeError
from agentfactory.core.github import github_repository
from agentfactory.forge.git import GitForge
from agentfactory.forge.github import GitHubApp, GitHubForge, GitHubToken

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.factory import Repository
    from agentfactory.forge.github import Credentials


def _token(repository: Repository, secret: dict[str, str]) -> str:
    """The plain token the credentials name ('' for none); ForgeError when it is missing."""
    plain = repository.credentials.token if repository.credentials is not None else None
    token = secret.get(plain.key, "").strip() if plain is not None else ""
    if plain is not None and not token:
        raise ForgeError(f"Secret '{plain.secret_name}' has no {plain.key}; add the token")
    return token


def git_forge(repository: Repository, workdir: Path, secret: dict[str, str]) -> GitForge:
    """Any git remote, with the Secret's token if the credentials name one."""
    token = _token(repository, secret)
    return GitForge(remote=repository.url, workdir=workdir, base_branch=repository.base_branch,
                    branch_prefix=repository.branch_prefix, token=token or None)  # fmt: skip


def github_forge(repository: Repository, workdir: Path, secret: dict[str, str]) -> GitHubForge:
    """A GitHub repository, with App credentials or a plain token. Raises ForgeError naming
    the missing key or the bad URL."""
    token = _token(repository, secret)
    app = repository.credentials.github_app if repository.credentials is not None else None
    try:
        target = github_repository(repository.url)
    except ValueError as exc:
        raise ForgeError(f"{exc}") from None
    auth: Credentials
    if app is not None:
        keys = (app.app_id_key, app.installation_id_key, app.private_key_key)
        missing = [key for key in keys if not secret.get(key, "").strip()]
        if missing:
            raise ForgeError(
                f"Secret '{app.secret_name}' has no {', '.join(missing)}; add the GitHub App's"
                " id, installation id and private key"
            )
        installation = secret[app.installation_id_key].strip()
        if not installation.isdigit():
            raise ForgeError(f"Secret '{app.secret_name}': {app.installation_id_key} is"
                             f" {installation!r}; use the installation's number")  # fmt: skip
        auth = GitHubApp(target, secret[app.app_id_key].strip(), int(installation),
                         secret[app.private_key_key])  # fmt: skip
    elif token:
        auth = GitHubToken(target, token)
    else:
        raise ForgeError("repository.credentials: a GitHub repository needs credentials; name a"
                         " githubApp Secret (or a token Secret)")  # fmt: skip
    return GitHubForge.at(auth, workdir, repository.base_branch, repository.branch_prefix)
