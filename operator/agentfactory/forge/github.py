"""GitHub through PyGithub: the forge operations on branches, pull requests, comments,
reviews, checks and merges (credentials and errors: `github_auth`).

"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from github.CommitStatus import CommitStatus
from github.PaginatedList import PaginatedList

from agentfactory.core.forges import MergeOutcome, PullRequest, Reviews
from agentfactory.core.github import (
    OPERATOR_PERMISSIONS,
    ForgeCheck,
    check_run_state,
    role_permissions,
    status_state,
)
from agentfactory.core.intake import TAKEN_LABEL, Issue
from agentfactory.forge.git import HEAD_TRAILER, TASK_TRAILER, GitForge
from agentfactory.forge.github_auth import (
    TOKEN_MARGIN,
    Credentials,
    GitHubApp,
    GitHubBusyError,
    GitHubError,
    GitHubToken,
    MintedToken,
    Pacing,
    failed,
    message_of,
    transient,
)
from github import (
    Auth,
    Github,
    GithubException,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from github.Repository import Repository

    from agentfactory.core.github import GitHubRepository


LABEL_PREFIX = "agentfactory:"
T = TypeVar("T")
#: How long the base branch's rules are trusted once read (a ruleset changes rarely).
RULES_SECONDS = 300.0
#: What GitHub's merge queue is asked of a queued pull request.
QUEUE_STATE = """query($id: ID!) { node(id: $id) { ... on PullRequest {
  merged isInMergeQueue mergeQueueEntry { position state } } } }"""


@dataclass
class GitHubForge(GitForge):
    """A repository on GitHub: a git remote (everything `GitForge` does, over HTTPS with the
    operator's own installation token, re-minted before it expires) plus pull requests,
    comments, reviews, checks and merges through PyGithub. Every call is find-or-create, so
    repeating one changes nothing."""

    repository: GitHubRepository = field(kw_only=True)
    auth: Credentials = field(kw_only=True)
    _token: MintedToken | None = field(default=None, init=False, repr=False)
    _api: tuple[str, Github, Repository] | None = field(default=None, init=False, repr=False)
    _rules: tuple[float, bool] | None = field(default=None, init=False, repr=False)
    _enqueued: set[tuple[int, str]] = field(default_factory=set, init=False, repr=False)
    """(PR number, head) this forge put in GitHub's merge queue and has not seen leave it."""

    @classmethod
    def at(cls, auth: Credentials, workdir: Path, base_branch: str = "main",
           branch_prefix: str = "factory/") -> GitHubForge:  # fmt: skip
        """The forge for *auth*'s repository, with the operator's clone in *workdir*."""
        return cls(remote=auth.repository.clone_url, workdir=workdir, base_branch=base_branch,
                   branch_prefix=branch_prefix, repository=auth.repository, auth=auth)  # fmt: skip

    def __post_init__(self) -> None:
        self.token_source = self.operator_token

    def operator_token(self) -> str:
        """The operator's write token, minted again when it is about to expire."""
        if self._token is None or self._token.expires_at - TOKEN_MARGIN <= datetime.now(UTC):
            self._token = self.auth.mint(OPERATOR_PERMISSIONS)
        return self._token.token

    def credentials_for(self, role: str | None) -> dict[str, str]:
        """A token for one stage pod: this repository, read-only, minted now, expiring (with
        a plain token: that token)."""
        return {"token": self.auth.mint(role_permissions(role)).token}

    def api(self) -> Repository:
        token = self.operator_token()
        if self._api is None or self._api[0] != token:
            self._close_api()
            client = Github(auth=Auth.Token(token), base_url=self.repository.api_url, lazy=True,
                            **self.auth.pacing.client_options())  # fmt: skip
            self._api = (token, client, client.get_repo(self.repository.full_name))
        return self._api[2]

    def _close_api(self) -> None:
        if self._api is not None:
            self._api[1].close()
            self._api = None

    def close(self) -> None:
        """Close the forge's HTTP connections (a forge replaced or no longer used: an
        unclosed client leaves its sockets to the garbage collector)."""
        self._close_api()
        self.auth.close()

    def verify(self) -> None:
        """Check that the credentials reach the repository (GitHubError with the fix if not):
        an App's token names the repository when it is minted; a plain token is tried."""
        if isinstance(self.auth, GitHubApp):
            self.operator_token()  # GitHub grants it for the repository, or says why not
            return
        try:
            self.api().requester.requestJsonAndCheck("GET", f"/repos/{self.repository.full_name}")
        except GithubException as exc:
            if transient(exc):
                raise failed(f"reading {self.repository.full_name}", exc) from None
            fixes = {
                401: "the token is wrong, expired or revoked: put a valid one in the Secret",
                403: "the token may not read it: grant it access to the repository",
                404: "no such repository, or the token cannot see it: check repository.url and"
                " the token's repository access",
            }
            fix = fixes.get(exc.status, "GitHub refused the request")
            raise GitHubError(f"reading {self.repository.full_name} with the Secret's token:"
                              f" {exc.status}: {fix}") from None  # fmt: skip

    def refusals(self, merge_method: str) -> list[str]:
        """The merge method, when the repository's settings do not allow it (read with the
        operator's token; a setting GitHub does not show that token is not judged)."""
        repo = self.api()
        try:
            allowed = {"merge": repo.allow_merge_commit, "squash": repo.allow_squash_merge,
                       "rebase": repo.allow_rebase_merge}  # fmt: skip
        except GithubException as exc:
            raise failed(f"reading the settings of {self.repository.full_name}", exc) from None
        if allowed.get(merge_method) is not False:
            return []
        others = ", ".join(m for m, yes in allowed.items() if yes) or "none"
        return [f"spec.merge.method: {self.repository.full_name} does not allow {merge_method}"
                f" merges (it allows: {others}); choose an allowed method, or allow"
                f" {merge_method} merges in the repository's settings"]  # fmt: skip

    def ensure_pull_request(self, branch: str, title: str, body: str) -> PullRequest:
        """The open PR from *branch* into the base (created when there is none); its title
        and body are brought up to date."""
        repo = self.api()
        head = f"{self.repository.owner}:{self.writable(branch)}"

        def find() -> Any:
            return next(iter(repo.get_pulls(state="open", head=head, base=self.base_branch)), None)

        try:
            pull = find()
            if pull is None:
                try:
                    pull = repo.create_pull(base=self.base_branch, head=branch, title=title,
                                            body=body)  # fmt: skip
                except GithubException as exc:
                    # Made by an earlier try whose answer was lost (PyGithub repeats a POST
                    # after a 5xx), so GitHub says it exists: find it.
                    if exc.status != 422 or "already exists" not in message_of(exc):
                        raise
                    if (pull := find()) is None:
                        raise
            elif pull.title != title or (pull.body or "") != body:
                pull.edit(title=title, body=body)
        except GithubException as exc:
            raise failed(f"pull request for {branch}", exc) from None
        return PullRequest(pull.number, pull.html_url, pull.head.sha)

    def comment(self, number: int, key: str, text: str) -> None:
        """Post *text* on the PR once per *key* (a later call with the same key edits it)."""
        self.comment_all(number, [(key, text)])

    def comment_all(self, number: int, comments: Sequence[tuple[str, str]]) -> None:
        """`comment` for each (key, text), reading the PR's comments once."""
        issue = self.api().get_issue(number)
        try:
            existing = {c.body.split("\n", 1)[0]: c for c in issue.get_comments()
                        if c.body.startswith("<!-- agentfactory:")}  # fmt: skip
            for key, text in comments:
                marker = f"<!-- agentfactory:{key} -->"
                body = f"{marker}\n{text}"
                if marker not in existing:
                    existing[marker] = issue.create_comment(body)
                elif existing[marker].body != body:
                    existing[marker].edit(body)
        except GithubException as exc:
            raise failed(f"comment on #{number}", exc) from None

    def open_issues(self, label: str) -> list[tuple[Issue, set[str]]]:
        """The open issues (not PRs) labelled *label*, each with all its labels."""
        try:
            return [(Issue(i.number, i.title, i.body or "", i.html_url),
                     {lb.name for lb in i.labels})
                    for i in self.api().get_issues(state="open", labels=[label])
                    if i.pull_request is None]  # fmt: skip
        except GithubException as exc:
            raise failed(f"issues labelled {label!r}", exc) from None

    def take_issue(self, number: int, text: str) -> None:
        """Mark issue *number* as made into a task (`TAKEN_LABEL`) and say so on it."""
        self.comment(number, "intake", text)
        try:
            self.api().get_issue(number).add_to_labels(TAKEN_LABEL)
        except GithubException as exc:
            raise failed(f"labelling #{number}", exc) from None

    def reviews(self, number: int, head_sha: str, approvers: list[str]) -> Reviews:
        """What people said of exactly *head_sha*, from each one's latest review (an approval of
        an older head, or one followed by a request for changes, does not count): who approved
        (listed approvers only), and a request for changes (a listed approver's, when the
        factory lists any) with its body and line comments. One read of the reviews; the
        comments are read only for a request."""
        latest: dict[str, Any] = {}
        allowed = {login.lstrip("@").lower(): login.lstrip("@") for login in approvers}
        try:
            pull = self.api().get_pull(number)
            for review in pull.get_reviews():
                if review.user is not None and review.state in ("APPROVED", "CHANGES_REQUESTED"):
                    latest[review.user.login] = review
            on_head = {login: r for login, r in latest.items() if r.commit_id == head_sha}
            # GitHub logins are case-insensitive; answer in the factory's spelling.
            approved = sorted(allowed[login.lower()] for login, r in on_head.items()
                              if r.state == "APPROVED" and login.lower() in allowed)  # fmt: skip
            asking = [(login, r) for login, r in on_head.items() if r.state == "CHANGES_REQUESTED"
                      and (not allowed or login.lower() in allowed)]  # fmt: skip
            if not asking:
                return Reviews(approved)
            login, review = asking[-1]
            notes = [f"- {c.path}:{c.line or c.original_line}: {c.body}"
                     for c in pull.get_review_comments()
                     if c.user is not None and c.user.login == login
                     and c.commit_id == head_sha]  # fmt: skip
        except GithubException as exc:
            raise failed(f"reviews of #{number}", exc) from None
        return Reviews(approved, (login, "\n".join([review.body or "(no summary)", *notes])))

    def label_phase(self, number: int, phase: str) -> None:
        """Show the task's phase as the PR's one `agentfactory:<phase>` label, keeping the
        labels people set."""
        issue = self.api().get_issue(number)
        try:
            kept = [label.name for label in issue.labels
                    if not label.name.startswith(LABEL_PREFIX)]  # fmt: skip
            wanted = [*kept, f"{LABEL_PREFIX}{phase}"]
            if sorted(label.name for label in issue.labels) != sorted(wanted):
                issue.set_labels(*wanted)
        except GithubException as exc:
            raise failed(f"labels of #{number}", exc) from None

    def checks(self, sha: str) -> list[ForgeCheck]:
        """Every check run and commit status on exactly *sha*."""
        commit = self.api().get_commit(sha)
        try:
            runs = [ForgeCheck(r.name, check_run_state(r.status, r.conclusion),
                               _summary(r.output.title if r.output else "",
                                        r.output.summary if r.output else "", r.html_url))
                    for r in commit.get_check_runs()]  # fmt: skip
            # The combined status (the latest per context), every page of it: PyGithub's
            # `get_combined_status` reads the first only, and its `get_statuses` reads a path
            # GitHub does not document.
            combined = PaginatedList(CommitStatus, self.api().requester, f"{commit.url}/status",
                                     None, list_item="statuses")  # fmt: skip
            statuses = [ForgeCheck(s.context, status_state(s.state),
                                   _summary(s.description or "", "", s.target_url))
                        for s in combined]  # fmt: skip
        except GithubException as exc:
            raise failed(f"checks on {sha[:12]}", exc) from None
        return runs + statuses

    def merge(
        self, *, task: str, branch: str, head_sha: str, method: str, title: str, body: str,
        delete_branch: bool,
    ) -> MergeOutcome:  # fmt: skip
        """Merge the task's PR at exactly *head_sha* (GitHub refuses it if a push raced in).
        A PR that already merged at that head is reported, not merged again; a base that moved
        is merged into the branch ("update branch") and the new head goes back to CI; a refusal
        is told by its cause (a conflict, a branch protection rule, or a passing one)."""
        self.writable(branch)
        repo = self.api()
        try:
            pulls = list(repo.get_pulls(state="all", head=f"{self.repository.owner}:{branch}",
                                        base=self.base_branch))  # fmt: skip
            done = next((p for p in pulls if p.merged_at and p.head.sha == head_sha), None)
            if done is not None:
                self._delete(branch, delete_branch)
                return MergeOutcome("merged", head_sha, merged_sha=done.merge_commit_sha,
                                    message="already merged")  # fmt: skip
            pull = next((p for p in pulls if p.state == "open"), None)
            if pull is None:
                return MergeOutcome("error", head_sha, message=f"no open pull request for {branch}")
            if pull.head.sha != head_sha:
                if self._base_merged_into(head_sha, pull.head.sha):  # an update we asked for
                    return self._moved(branch, head_sha, pull.head.sha)
                return MergeOutcome("error", head_sha, message=f"{branch} is at {pull.head.sha},"
                                    f" not the verified {head_sha}")  # fmt: skip
            if self.merge_queue():
                return self._through_queue(pull.number, pull.node_id, head_sha)
            if repo.compare(self.base_branch, head_sha).behind_by > 0 and not self._verified(
                head_sha, method
            ):
                return self._update(pull.number, branch, head_sha)
            if self._mergeable(pull.number) is False:
                return MergeOutcome("conflict", head_sha, message="GitHub reports a conflict")
            trailers = f"{TASK_TRAILER}: {task}\n{HEAD_TRAILER}: {head_sha}"
            status = pull.merge(commit_title=title, commit_message=f"{body}\n\n{trailers}",
                                merge_method=method, sha=head_sha)  # fmt: skip
        except GithubException as exc:
            return _merge_refused(f"merging {branch}", exc, head_sha, method)
        self._delete(branch, delete_branch)
        return MergeOutcome("merged", head_sha, merged_sha=status.sha)

    def merge_queue(self) -> bool:
        """Whether a ruleset on the base branch requires GitHub's merge queue (read at most
        every `RULES_SECONDS`). Where it does, GitHub builds, checks and merges queued pull
        requests itself, and refuses a merge through the REST API."""
        now = time.monotonic()
        if self._rules is None or now - self._rules[0] > RULES_SECONDS:
            path = f"{self.api().url}/rules/branches/{self.base_branch}"
            try:
                _, rules = self.api().requester.requestJsonAndCheck("GET", path)
            except GithubException as exc:
                raise failed(f"reading the rules of {self.base_branch}", exc) from None
            queued = any(rule.get("type") == "merge_queue" for rule in rules or [])
            self._rules = (now, queued)
        return self._rules[1]

    def _through_queue(self, number: int, node_id: str, head_sha: str) -> MergeOutcome:
        """Put the PR at exactly *head_sha* in GitHub's merge queue, or say where it stands
        there; one that left the queue without merging (its checks failed on the merge
        group, or it conflicts with one ahead) is an error, so the merge is tried again."""
        requester, where = self.api().requester, f"GitHub's merge queue for {self.base_branch}"
        try:
            _, data = requester.graphql_query(QUEUE_STATE, {"id": node_id})
            state = (data.get("data") or {}).get("node") or {}
            entry = state.get("mergeQueueEntry") or {}
            if state.get("isInMergeQueue"):
                place = f"position {entry.get('position', '?')}, {entry.get('state', '?')}"
                return MergeOutcome("queued", head_sha, message=f"in {where}: {place}")
            if (number, head_sha) in self._enqueued:
                self._enqueued.discard((number, head_sha))
                return MergeOutcome("error", head_sha, message=f"{where} removed PR #{number}"
                                    " without merging it: its required checks failed on the"
                                    " merge group, or it conflicts with a change ahead of it;"
                                    " see the pull request's timeline")  # fmt: skip
            _, queued = requester.graphql_named_mutation(
                "enqueuePullRequest", {"pullRequestId": node_id, "expectedHeadOid": head_sha},
                "mergeQueueEntry { position state }",
            )  # fmt: skip
        except GithubException as exc:
            if transient(exc):
                raise failed(f"queueing PR #{number}", exc) from None
            return MergeOutcome("error", head_sha, message=f"{where} refused PR #{number}:"
                                f" {message_of(exc)}")  # fmt: skip
        self._enqueued.add((number, head_sha))
        entry = (queued or {}).get("mergeQueueEntry") or {}
        return MergeOutcome("queued", head_sha, message=f"in {where}: position"
                            f" {entry.get('position', '?')}; it merges there once its checks"
                            " pass on the merge group")  # fmt: skip

    def _verified(self, head_sha: str, method: str) -> bool:
        """Whether merging *head_sha* into the base as it is now yields exactly the tree CI
        verified (the merge queue built it on changes that have merged since), computed in
        the operator's clone as GitHub's merge computes it."""
        self.sync()
        base = self.git("rev-parse", f"origin/{self.base_branch}")
        return self._lands_verified(base, head_sha, method)

    def _mergeable(self, number: int) -> bool | None:
        """Whether GitHub can merge the PR. GitHub answers null while it computes that after
        a push, so a null is read again (a lasting null: GitHub decides at the merge)."""
        mergeable: bool | None = self._until(lambda: self.api().get_pull(number).mergeable,
                                             lambda seen: seen is not None)  # fmt: skip
        return mergeable

    def _until(self, read: Callable[[], T], done: Callable[[T], bool]) -> T:
        """*read* again, at doubling intervals for `Pacing.update_wait` in all, until *done*
        says so of what it read; the last read. GitHub announces nothing it does later."""
        for wait in self.auth.pacing.update_polls():
            seen = read()
            if done(seen):
                return seen
            time.sleep(wait)
        return read()

    def _update(self, number: int, branch: str, head_sha: str) -> MergeOutcome:
        """Ask GitHub to merge the base into the branch and wait until it has: GitHub accepts
        (202) and moves the branch later, so the head read at once is still the old one."""
        pull = self.api().get_pull(number)
        try:
            self.api().requester.requestJsonAndCheck(
                "PUT", f"{pull.url}/update-branch", input={"expected_head_sha": head_sha}
            )
        except GithubException as exc:
            if transient(exc):
                raise failed(f"updating {branch}", exc) from None
            said = message_of(exc)
            if exc.status == 422 and "expected head sha" in said.lower():
                return MergeOutcome("error", head_sha, message=f"the head moved: {said}")
            if exc.status == 422:
                return MergeOutcome("conflict", head_sha, message=f"GitHub cannot merge"
                                    f" {self.base_branch} into {branch}: {said}")  # fmt: skip
            raise failed(f"updating {branch}", exc) from None
        new_head = self._until(lambda: self.branch_head(branch),
                               lambda seen: seen not in (None, head_sha))  # fmt: skip
        if new_head is not None and new_head != head_sha:
            if self._base_merged_into(head_sha, new_head):
                return self._moved(branch, head_sha, new_head)
            said = f"{branch} is at {new_head}, not GitHub's merge of the base into {head_sha}"
            return MergeOutcome("error", head_sha, message=said)
        raise GitHubBusyError(f"GitHub accepted merging {self.base_branch} into {branch} but has"
                              f" not moved it from {head_sha[:12]} yet; the next pass looks"
                              " again")  # fmt: skip

    def _moved(self, branch: str, head_sha: str, new_head: str) -> MergeOutcome:
        message = f"merged {self.base_branch} into {branch}; CI runs again"
        return MergeOutcome("base-moved", head_sha, new_head_sha=new_head, message=message)

    def _base_merged_into(self, head_sha: str, new_head: str) -> bool:
        """Whether *new_head* is GitHub's merge of the base into *head_sha* ("update branch",
        finished after the pass that asked for it gave up waiting): two parents, the first
        the verified head, the second on the base branch."""
        repo = self.api()
        parents = [p.sha for p in repo.get_commit(new_head).parents]
        return (len(parents) == 2 and parents[0] == head_sha
                and repo.compare(parents[1], self.base_branch).behind_by == 0)  # fmt: skip

    def _delete(self, branch: str, wanted: bool) -> None:
        if wanted and self.branch_head(self.writable(branch)) is not None:
            repo = self.api()
            try:
                # One DELETE on the documented endpoint; PyGithub's lazy GitRef would address
                # `git/ref/...`, which GitHub does not document for DELETE.
                repo.requester.requestJsonAndCheck("DELETE", f"{repo.url}/git/refs/heads/{branch}")
            except GithubException as exc:
                if exc.status not in (404, 422):  # gone already
                    raise failed(f"deleting {branch}", exc) from None


def _merge_refused(what: str, exc: GithubException, head_sha: str, method: str) -> MergeOutcome:
    """A refused merge told by its cause. GitHub answers 405 for a conflict and for each
    branch protection rule alike: its message says which."""
    said = message_of(exc)
    lower = said.lower()
    if transient(exc) or (exc.status == 405 and "base branch was modified" in lower):
        raise failed(what, exc) from None  # passing: no merge attempt is spent on it
    if exc.status == 405 and "status check" in lower:
        return MergeOutcome("blocked", head_sha, message=f"GitHub's branch protection: {said};"
                            " list that check in ci.requiredChecks so that the task waits for"
                            " it, or drop it from the rule, then retry the task")  # fmt: skip
    if exc.status == 405 and "review" in lower:
        return MergeOutcome("blocked", head_sha, message=f"GitHub's branch protection: {said};"
                            " approve the pull request on GitHub (or set"
                            " approvals.requireHumanApproval so the task waits for it), then"
                            " retry the task")  # fmt: skip
    if exc.status == 405 and "not allowed" in lower:
        return MergeOutcome("blocked", head_sha, message=f"GitHub: {said}; set merge.method to"
                            f" a method the repository allows (not {method}), or allow it in"
                            " the repository's settings, then retry the task")  # fmt: skip
    if exc.status == 405:  # not mergeable: a conflict
        return MergeOutcome("conflict", head_sha, message=f"GitHub refused the merge: {said}")
    if exc.status == 409:  # the head moved: a push raced the verified head
        return MergeOutcome("error", head_sha, message=f"the head moved: {said}")
    return MergeOutcome("error", head_sha, message=f"{exc.status} {said}")


def _summary(title: str, text: str, url: str | None) -> str:
    return "\n".join(part for part in (title, text, url or "") if part)


__all__ = [
    "Credentials", "GitHubApp", "GitHubBusyError", "GitHubError", "GitHubForge", "GitHubToken",
    "MintedToken", "Pacing", "PullRequest", "Reviews",
]  # fmt: skip
