"""The forge a factory's repository calls for, from its spec and its credentials Secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.github import github_repository
from agentfactory.forge.git import ForgeError, GitForge
from agentfactory.forge.github import GitHubApp, GitHubForge, GitHubToken

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.factory import Repository
    from agentfactory.forge.github import Credentials


def build_forge(repository: Repository, workdir: Path, secret: dict[str, str]) -> GitForge:
    """`GitHubForge` for a GitHub repository (App credentials, or a plain token), else
    `GitForge` (with the Secret's token, if any). *secret* is the credentials Secret's decoded
    data. Raises ForgeError naming the missing key or the bad URL."""
    creds = repository.credentials
    app, plain = (creds.github_app, creds.token) if creds is not None else (None, None)
    token = secret.get(plain.key, "").strip() if plain is not None else ""
    if plain is not None and not token:
        raise ForgeError(f"Secret '{plain.secret_name}' has no {plain.key}; add the token")
    if repository.forge != "github":
        return GitForge(remote=repository.url, workdir=workdir, base_branch=repository.base_branch,
                        branch_prefix=repository.branch_prefix, token=token or None)  # fmt: skip
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
