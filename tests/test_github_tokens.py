"""Installation tokens minted per pod and role through the real PyGithub, against the fake
GitHub: one repository, exactly the role's permissions, and refusals that name the fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from testbed.fakes.github_api import FakeGitHub, private_key

from agentfactory.core.github import OPERATOR_PERMISSIONS, github_repository, role_permissions
from agentfactory.forge.github import GitHubError
from tests.githubs import ALL, REPO, app


@pytest.mark.parametrize("role", ["planner", "plan-reviewer", "implementer", "code-reviewer",
                                  None])  # fmt: skip
def test_a_pod_token_covers_one_repository_read_only(role: str | None) -> None:
    with FakeGitHub() as fake:
        fake.install(7, REPO, **ALL)
        fake.install(7, "acme/other", **ALL)
        minted = app(fake).mint(role_permissions(role))
        assert minted.repositories == ["shop"]
        assert minted.permissions == role_permissions(role)
        assert all(level == "read" for level in minted.permissions.values())
        assert minted.expires_at > datetime.now(UTC)
        grant = fake.grants[minted.token]
        assert grant.repositories == [REPO], "the fake granted exactly what GitHub would"
        assert minted.token not in repr(minted)


def test_the_operator_token_writes() -> None:
    with FakeGitHub() as fake:
        fake.install(7, REPO, **ALL)
        minted = app(fake).mint(OPERATOR_PERMISSIONS)
        assert minted.permissions["contents"] == "write"
        assert minted.permissions["pull_requests"] == "write"


def test_a_wrong_private_key_is_refused_with_the_fix() -> None:
    with FakeGitHub() as fake:
        fake.install(7, REPO, **ALL)
        with pytest.raises(GitHubError, match=r"401.*app-id and private-key"):
            app(fake, key=private_key()).mint(role_permissions("planner"))


def test_an_installation_without_the_repository_or_permission_is_refused() -> None:
    with FakeGitHub() as fake:
        fake.install(7, "acme/other", contents="read")
        with pytest.raises(GitHubError, match=r"422.*install the App on acme/shop"):
            app(fake).mint(role_permissions("planner"))
        fake.install(8, REPO, contents="read")
        with pytest.raises(GitHubError, match="422"):
            app(fake, installation=8).mint(OPERATOR_PERMISSIONS)
        with pytest.raises(GitHubError, match=r"404.*installation-id"):
            app(fake, installation=9).mint(role_permissions("planner"))


def test_server_errors_are_retried_with_backoff() -> None:
    with FakeGitHub() as fake:
        fake.install(7, REPO, **ALL)
        fake.fail(502, times=2)
        minted = app(fake).mint(role_permissions("planner"))
        assert minted.repositories == ["shop"]
        assert len(fake.calls) == 3, "two failures, then the grant"


def test_repository_urls() -> None:
    public = github_repository("https://github.com/acme/shop.git")
    assert (public.api_url, public.full_name) == ("https://api.github.com", "acme/shop")
    enterprise = github_repository("https://git.example.com/acme/shop")
    assert enterprise.api_url == "https://git.example.com/api/v3"
    assert enterprise.clone_url == "https://git.example.com/acme/shop.git"
    with pytest.raises(ValueError, match=r"https://github\.com/OWNER/REPO\.git"):
        github_repository("git@github.com:acme/shop.git")
