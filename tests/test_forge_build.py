"""Which forge a factory's repository and Secret make, and what a Secret that does not fit
says: the key that is missing, the value that is wrong."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from agentfactory.core.factory import Repository
from agentfactory.forge.git import ForgeError, GitForge
from agentfactory.forge.github import GitHubApp, GitHubForge, GitHubToken
from agentfactory.forge.registry import build_forge

if TYPE_CHECKING:
    from pathlib import Path

APP = {"githubApp": {"secretName": "gh-app"}}
TOKEN = {"token": {"secretName": "gh-token"}}
URL = "https://github.com/acme/shop.git"
APP_SECRET = {"app-id": "42", "installation-id": "7", "private-key": "PEM"}


def repository(forge: str, credentials: dict[str, Any] | None, url: str = URL) -> Repository:
    return Repository.model_validate({"url": url, "forge": forge, "credentials": credentials})


def test_github_with_an_app_mints_and_with_a_token_uses_it(tmp_path: Path) -> None:
    app = build_forge(repository("github", APP), tmp_path, APP_SECRET)
    assert isinstance(app, GitHubForge) and isinstance(app.auth, GitHubApp)
    assert (app.auth.app_id, app.auth.installation_id) == ("42", 7)
    assert app.repository.full_name == "acme/shop"
    token = build_forge(repository("github", TOKEN), tmp_path, {"token": "ghp_x\n"})
    assert isinstance(token, GitHubForge) and isinstance(token.auth, GitHubToken)
    assert token.operator_token() == "ghp_x", "trimmed, as `kubectl create secret` may add"


def test_a_git_remote_takes_the_token_if_there_is_one(tmp_path: Path) -> None:
    plain = build_forge(repository("git", TOKEN, "https://git.example/shop.git"), tmp_path,
                        {"token": "t0k"})  # fmt: skip
    assert type(plain) is GitForge and plain.token == "t0k"
    open_remote = build_forge(repository("git", None, "/srv/shop.git"), tmp_path, {})
    assert type(open_remote) is GitForge and open_remote.token is None


@pytest.mark.parametrize(
    ("forge", "credentials", "secret", "message"),
    [
        ("github", APP, {"app-id": "42"},
         "Secret 'gh-app' has no installation-id, private-key; add the GitHub App's"),
        ("github", APP, {**APP_SECRET, "installation-id": "seven"},
         "installation-id is 'seven'; use the installation's number"),
        ("github", TOKEN, {}, "Secret 'gh-token' has no token; add the token"),
        ("git", TOKEN, {"other": "x"}, "Secret 'gh-token' has no token"),
    ],
)  # fmt: skip
def test_a_secret_that_does_not_fit_names_what_is_missing(
    forge: str, credentials: dict[str, Any], secret: dict[str, str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ForgeError, match=re.escape(message)):
        build_forge(repository(forge, credentials), tmp_path, secret)


def test_a_github_url_that_is_not_one_says_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match=re.escape("use https://github.com/OWNER/REPO.git")):
        build_forge(repository("github", TOKEN, "git@github.com:acme/shop.git"), tmp_path,
                    {"token": "t"})  # fmt: skip
