"""GitForge: any git remote (or a local bare repository) as the factory's forge.

The operator keeps its own clone and is the only writer: agents hand back diffs, the forge
commits them on the task branch, pushes, and merges with the factory's method. Every
operation is idempotent: pushing a branch to the commit it already has changes nothing, and a
merge commit carries trailers naming the task and the head it merged, so a merge retried after
a crash finds the first one instead of landing twice.

Merging pins the expected head (a racing push makes the merge fail), and when the base has
moved it rebases the branch instead of merging: a clean rebase returns `base-moved` with the
new head, so CI verifies what will land; a conflicting one returns `conflict`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory.core.forges import ForgeError, MergeOutcome, Rebased
from agentfactory.core.gitauth import token_env
from agentfactory.core.names import DNS1123_LABEL, task_branch_refusal

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TASK_TRAILER = "Agentfactory-Task"
#: Where every implementer attempt's commit is kept on the remote, under the task's name.
KEPT_REFS = "refs/agentfactory"
HEAD_TRAILER = "Agentfactory-Head"


class BranchRefusedError(ForgeError):
    """A task branch the forge will not write (the base, or outside the prefix)."""


@dataclass
class GitForge:
    """A remote plus the operator's working clone of it."""

    remote: str
    workdir: Path
    base_branch: str = "main"
    branch_prefix: str = "factory/"
    """Task branches start with it; the forge writes no other branch but the base (merging)."""
    author_name: str = "agentfactory"
    author_email: str = "agentfactory@localhost"
    token: str | None = field(default=None, repr=False)
    """A plain token for an HTTP remote (sent as a header, never stored in the clone)."""
    token_source: Callable[[], str] | None = field(default=None, repr=False)
    """Where to get a token for each git call instead (an expiring token, re-minted)."""

    # -- plumbing ----------------------------------------------------------------------

    @property
    def clone(self) -> Path:
        return self.workdir / "operator-clone"

    def _run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run git with the forge's identity and nothing else from the environment."""
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
            "GIT_TERMINAL_PROMPT": "0",
            **token_env(self.token_source() if self.token_source else self.token),
        }
        return subprocess.run(  # noqa: S603 - fixed argv
            ["git", *args],  # noqa: S607 - git from PATH by design
            cwd=cwd or self.clone, capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip

    def close(self) -> None:
        """Nothing to close: git runs as a process per call."""

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """git's stdout; raises ForgeError on failure unless *check* is False."""
        result = self._run(*args, cwd=cwd)
        if check and result.returncode != 0:
            raise ForgeError(f"git {' '.join(args[:2])} failed: {result.stderr.strip()[:800]}")
        return result.stdout.strip()

    def sync(self) -> None:
        """Make sure the operator's clone exists and knows the remote's branches."""
        if not self._cloned():
            return  # a fresh clone knows them
        self.git("fetch", "--quiet", "--prune", "origin")

    def _cloned(self) -> bool:
        """Make sure the operator's clone exists; whether it did already."""
        if (self.clone / ".git").exists():
            return True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git("clone", "--quiet", self.remote, str(self.clone), cwd=self.workdir)
        return False

    def base_sha(self) -> str:
        """The base branch's current commit on the remote."""
        self.sync()
        return self.git("rev-parse", f"origin/{self.base_branch}")

    def branch_head(self, branch: str) -> str | None:
        """The branch's commit on the remote, or None when it does not exist."""
        self.workdir.mkdir(parents=True, exist_ok=True)  # no clone needed to ask the remote
        out = self.git("ls-remote", self.remote, f"refs/heads/{branch}", cwd=self.workdir)
        return out.split()[0] if out else None

    def merge_base(self, a: str, b: str) -> str:
        """The best common ancestor of two commits."""
        return self.git("merge-base", a, b)

    def diff(self, base: str, head: str) -> str:
        """What *head* changed since it left *base* (empty when that cannot be told)."""
        return self.git("diff", f"{base}...{head}", check=False)

    def checkout_into(self, dest: Path, ref: str) -> None:
        """A fresh clone of the remote at *ref* in *dest* (a stage's workspace)."""
        self.git("clone", "--quiet", "--no-checkout", self.remote, str(dest), cwd=self.workdir)
        self.git("checkout", "--quiet", "--detach", ref, cwd=dest)

    def credentials_for(self, role: str | None) -> dict[str, str]:
        """What a stage pod of *role* may hold to read the repository. A plain git remote
        has no way to mint a narrower token, so a pod gets the factory's read token (the
        CredentialsValid condition warns about it), or nothing for an open remote."""
        del role  # every role only reads
        return {"token": self.token} if self.token else {}

    # -- branches ------------------------------------------------------------------------

    def commit_patch(self, parent: str, diff: str, message: str) -> str:
        """Commit *diff* on top of *parent* in the operator's clone (not pushed)."""
        self.sync()
        self.git("checkout", "--quiet", "--detach", "--force", parent)
        self.git("clean", "-fdq")
        patch = self.workdir / "incoming.patch"
        patch.write_text(diff if diff.endswith("\n") else diff + "\n", encoding="utf-8")
        self.git("apply", "--index", "--binary", "--whitespace=nowarn", str(patch))
        self.git("commit", "--quiet", "--no-verify", "-m", message)
        return self.git("rev-parse", "HEAD")

    def writable(self, branch: str) -> str:
        """*branch*, when a task may write it; else BranchRefusedError. Every write of a task
        branch passes here: the guard does not depend on the spec having been validated."""
        refusal = task_branch_refusal(branch, self.base_branch, self.branch_prefix)
        if refusal is not None:
            raise BranchRefusedError(refusal)
        return branch

    def push_branch(self, branch: str, sha: str) -> None:
        """Point the remote branch at *sha* (a no-op when it already is: git sends nothing
        then, so asking first would only cost a second round trip)."""
        ref = f"{sha}:refs/heads/{self.writable(branch)}"
        self._cloned()
        self.git("push", "--quiet", "--force", "origin", ref)

    def keep(self, task: str, label: str, sha: str) -> str:
        """Keep *sha* on the remote as `refs/agentfactory/<task>/<label>` (outside the
        branches: no CI or PR runs on it), for the record of every attempt; the ref."""
        if not re.fullmatch(DNS1123_LABEL, task) or not re.fullmatch(r"[a-z0-9-]{1,40}", label):
            raise ForgeError(f"not a task and attempt to keep: {task!r}, {label!r}")
        ref = f"{KEPT_REFS}/{task}/{label}"
        self.git("push", "--quiet", "--force", "origin", f"{sha}:{ref}")
        return ref

    def forget(self, task: str) -> list[str]:
        """Delete every ref kept for *task* (once the task is deleted); the refs deleted."""
        listed = self.git("ls-remote", "origin", f"{KEPT_REFS}/{task}/*")
        refs = [line.split()[1] for line in listed.splitlines() if line.strip()]
        if refs:
            self.git("push", "--quiet", "origin", *(f":{ref}" for ref in refs))
        return refs

    def delete_branch(self, branch: str) -> None:
        if self.branch_head(self.writable(branch)) is not None:
            self.git("push", "--quiet", "origin", f":refs/heads/{branch}")

    # -- merging -------------------------------------------------------------------------

    def find_merge(self, task: str, head: str) -> str | None:
        """The commit on the base, as the clone last saw it, that already merged *head* for
        *task*, if any."""
        out = self.git(
            "log", f"origin/{self.base_branch}", "--format=%H",
            f"--grep={HEAD_TRAILER}: {head}", "--grep", f"{TASK_TRAILER}: {task}", "--all-match",
        )  # fmt: skip
        return out.splitlines()[0] if out else None

    def merge(
        self, *, task: str, branch: str, head_sha: str, method: str, title: str, body: str,
        delete_branch: bool,
    ) -> MergeOutcome:  # fmt: skip
        """Merge *branch* (which must point at *head_sha*) into the base.

        The common case, the base moved only by this clone's own pushes, needs no fetch: the
        clone's view of the remote is current, and the push is pinned to it. Anything else
        (a refused push, a branch or base that moved) is decided again after a fetch."""
        self.writable(branch)
        message = f"{title}\n\n{body}\n\n{TASK_TRAILER}: {task}\n{HEAD_TRAILER}: {head_sha}\n"
        cloned = self._cloned()  # a new clone is as fresh as a fetch
        for fresh in (False, True) if cloned else (True,):
            if fresh and cloned:
                self.sync()
            already = self.find_merge(task, head_sha)
            if already:
                if delete_branch:
                    self.delete_branch(branch)
                return MergeOutcome("merged", head_sha, merged_sha=already,
                                    message="already merged")  # fmt: skip
            landed = self._land(branch, head_sha, method, message, delete_branch, fresh=fresh)
            if landed is not None:
                return landed
        raise AssertionError("a fresh attempt always decides")  # pragma: no cover

    def _land(self, branch: str, head_sha: str, method: str, message: str, delete_branch: bool,
              *, fresh: bool) -> MergeOutcome | None:  # fmt: skip
        """Merge from what the clone knows of the remote; None when not *fresh* and that
        knowledge may be out of date."""
        current = self.git("rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}",
                           check=False) or None  # fmt: skip
        base = self.git("rev-parse", f"origin/{self.base_branch}")
        if current != head_sha:
            return None if not fresh else MergeOutcome(
                "error", head_sha, message=f"{branch} is at {current}, not the verified {head_sha}"
            )  # fmt: skip
        if not self._lands_verified(base, head_sha, method):
            return None if not fresh else self._rebase(branch, head_sha, base)
        merged = self._merge_commit(base, head_sha, method, message)
        # One atomic push lands the merge and deletes the branch, each pinned to what was
        # verified: a racing push to either makes both fail.
        refs = [f"{merged}:refs/heads/{self.base_branch}"]
        leases = [f"--force-with-lease={self.base_branch}:{base}"]
        if delete_branch:
            refs.append(f":refs/heads/{branch}")
            leases.append(f"--force-with-lease={branch}:{head_sha}")
        pushed = self._run("push", "--quiet", "--atomic", *leases, "origin", *refs)
        if pushed.returncode != 0:
            return None if not fresh else MergeOutcome(
                "error", head_sha, message=f"the base moved during the merge: {pushed.stderr[:300]}"
            )  # fmt: skip
        return MergeOutcome("merged", head_sha, merged_sha=merged)

    def _merge_commit(self, base: str, head_sha: str, method: str, message: str) -> str:
        """The commit that lands *head_sha* on *base* with *method*, once it is known to yield
        exactly the head's tree (squash and merge need no work tree for that)."""
        tree = f"{head_sha}^{{tree}}"
        if method == "squash":
            return self.git("commit-tree", tree, "-p", base, "-m", message)
        if method == "merge":
            return self.git("commit-tree", tree, "-p", base, "-p", head_sha, "-m", message)
        # rebase: replay the branch's commits on the base, then mark the last one
        self.git("checkout", "--quiet", "--detach", "--force", base)
        self.git("cherry-pick", f"{base}..{head_sha}")
        self.git("commit", "--quiet", "--amend", "--no-verify", "-m", message)
        return self.git("rev-parse", "HEAD")

    def _lands_verified(self, base: str, head_sha: str, method: str) -> bool:
        """Whether merging *head_sha* into *base* now yields exactly the tree CI verified:
        always when the base has not moved; also when it moved by the very changes the head
        was built on (the merge queue built it on the ones ahead, which have merged since).
        A rebase replays the branch's commits, so there the base must not have moved."""
        if self.git("merge-base", base, head_sha) == base:
            return True
        if method == "rebase":
            return False
        merged = self._run("merge-tree", "--write-tree", base, head_sha)
        verified = self.git("rev-parse", f"{head_sha}^{{tree}}")
        return merged.returncode == 0 and merged.stdout.split("\n", 1)[0].strip() == verified

    def rebase_onto(self, head_sha: str, *, upstream: str | None, onto: str | None) -> Rebased:
        """*head_sha*'s own commits (those after *upstream*; None: after where it left the
        base) replayed on *onto* (None: the base), in the operator's clone; nothing pushed.
        A conflict leaves nothing behind and names the files."""
        # Built on the one ahead, only the base's news would matter, and not even that for
        # where the head left the base: the head was made in this clone from a base it had
        # fetched, and the clone's base only moves forward. So a clone that has the commits
        # needs no fetch.
        known = (
            onto is not None
            and (self.clone / ".git").exists()
            and self._run("rev-list", "--no-walk", head_sha, onto, *filter(None, [upstream]))
            .returncode == 0
        )  # fmt: skip
        if not known:
            self.sync()
        base = self.git("rev-parse", f"origin/{self.base_branch}")
        since = upstream or self.git("merge-base", head_sha, base)
        target = onto or base
        self.git("checkout", "--quiet", "--detach", "--force", head_sha)
        rebased = self._run("rebase", "--quiet", "--onto", target, since)
        if rebased.returncode != 0:
            conflicted = self._abandon_rebase()
            where = f"{target[:12]}" + (" (the base)" if onto is None else "")
            return Rebased(None, f"replaying it on {where} conflicts in:"
                                 f" {conflicted or 'unknown files'}")  # fmt: skip
        return Rebased(self.git("rev-parse", "HEAD"))

    def _abandon_rebase(self) -> str:
        """Abort the rebase under way; the files it found in conflict."""
        conflicted = self.git("diff", "--name-only", "--diff-filter=U", check=False)
        self.git("rebase", "--abort", check=False)
        return conflicted

    def _rebase(self, branch: str, head_sha: str, base: str) -> MergeOutcome:
        self.git("checkout", "--quiet", "--detach", "--force", head_sha)
        rebased = self._run("rebase", "--quiet", base)
        if rebased.returncode != 0:
            conflicted = self._abandon_rebase()
            return MergeOutcome(
                "conflict", head_sha,
                message=f"rebasing onto {base[:12]} conflicts in: {conflicted or 'unknown files'}",
            )  # fmt: skip
        new_head = self.git("rev-parse", "HEAD")
        self.git("push", "--quiet", f"--force-with-lease={branch}:{head_sha}", "origin",
                 f"{new_head}:refs/heads/{branch}")  # fmt: skip
        return MergeOutcome("base-moved", head_sha, new_head_sha=new_head)


__all__ = ["BranchRefusedError", "ForgeError", "GitForge", "MergeOutcome"]
