"""A local fake of the GitHub REST API, served over real HTTP for the real PyGithub.

Laid out as GitHub Enterprise Server is (`<host>/api/v3/...`), so a clone URL
`http://127.0.0.1:PORT/OWNER/REPO.git` leads PyGithub to this server's API, as it would to an
Enterprise host. Faithful where the operator depends on it:

- App authentication: `POST /app/installations/{id}/access_tokens` takes only a JWT signed
  with the App's private key (RS256, `iss` = the App id, at most 10 minutes long); it grants
  tokens for the repositories and permissions asked, refusing (422) any the installation does
  not have, as GitHub does. Every other call takes an installation token (`token X` or
  `Bearer X`) that is unexpired, covers the repository, and holds the permission the endpoint
  needs (403 otherwise, with GitHub's message).
- GitHub's merge queue, where a branch's rules require it: the branch's rules say so
  (`GET .../rules/branches/{branch}`), a merge through the REST API is refused, and GraphQL
  (`POST /api/graphql`, every request validated against GitHub's own schema) enqueues a pull
  request at an expected head and tells where it stands; `settle_merge_queue` plays the
  queue's checks: each queued PR merges in order, or leaves the queue when it fails.
- Faults by rule: each of `chaos` sees every API call and may answer it with a `Fault`
  instead, or serve it and then lose the answer (a gateway error after the write was done).
  `fail(status, times)` and `rate_limit(...)` add a rule that answers the next calls so (a
  403 with `x-ratelimit-remaining: 0` for a spent limit, GitHub's shape), to drive
  PyGithub's retry.

`calls` logs (method, path) of every request, for counting what a feature costs.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_TOKENS = re.compile(r"^/api/v3/app/installations/(?P<installation>\d+)/access_tokens$")
_REPO = re.compile(r"^/api/v3/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?$")
_GRAPHQL = "/api/graphql"
#: What a ruleset's merge queue rule says, as GitHub lists it for a branch.
_MERGE_QUEUE_RULE = {"type": "merge_queue", "parameters": {
    "check_response_timeout_minutes": 60, "grouping_strategy": "ALLGREEN",
    "max_entries_to_build": 5, "max_entries_to_merge": 5, "merge_method": "MERGE",
    "min_entries_to_merge": 1, "min_entries_to_merge_wait_minutes": 5}}  # fmt: skip


def private_key() -> str:
    """A fresh RSA key in PEM, as GitHub hands an App's private key out."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


@dataclass
class Grant:
    """An installation token as the fake issued it."""

    installation: int
    repositories: list[str]
    permissions: dict[str, str]
    expires_at: datetime


Reply = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class Exchange:
    """One API call as the fake saw and answered it (path without `/api/v3`)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    answer: Any
    injected: bool
    """Answered by a chaos rule (a fault GitHub may give to any call), not by the fake."""


@dataclass(frozen=True)
class Fault:
    """An injected answer; *after*: the call is served first and its answer lost."""

    reply: Reply
    after: bool = False


@dataclass(frozen=True)
class Protection:
    """A branch protection rule: checks that must pass on the head, approving reviews."""

    required_checks: tuple[str, ...] = ()
    required_approvals: int = 0


@dataclass
class FakeGitHub:
    """The fake: one App with installations, over repositories named OWNER/REPO."""

    root: Path | None = None
    """Where the bare repositories live (`<root>/<owner>/<repo>.git`), served over git's smart
    HTTP by `git http-backend`, with the same token rules as the API."""
    app_id: str = "4242"
    key: str = field(default_factory=private_key)
    installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    """installation id -> {"repositories": [full names], "permissions": {name: level}}."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    """Every API call with its answer, for holding both to GitHub's description."""
    conform: bool = True
    """Whether leaving the `with` block fails on any exchange GitHub's description does not
    allow (`divergences`)."""
    grants: dict[str, Grant] = field(default_factory=dict)
    pulls: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    issues: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """repository -> number -> a plain issue (PRs and issues share the numbers, as on GitHub)."""
    """repository -> number -> the PR as stored (GitHub's shape, head SHA read live)."""
    check_runs: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reviews: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    review_comments: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    """comment id -> {"issue": (repository, number), "body": ...}."""
    token_lifetime: timedelta = timedelta(hours=1)
    call_times: list[float] = field(default_factory=list)
    """When each of `calls` arrived (time.monotonic)."""
    chaos: list[Callable[[str, str], Fault | None]] = field(default_factory=list)
    """Rules called with (method, path) for each API call, in order; the first fault wins."""
    update_delay: float = 0.2
    """How long after accepting an update-branch (202) GitHub moves the branch."""
    page_size: int = 30
    """GitHub's default page size for lists (`per_page` asks up to 100)."""
    protection: dict[tuple[str, str], Protection] = field(default_factory=dict)
    """(repository, branch) -> its branch protection rule."""
    merge_methods: dict[str, set[str]] = field(default_factory=dict)
    """repository -> the merge methods its settings allow (all three when absent)."""
    merge_queues: set[tuple[str, str]] = field(default_factory=set)
    """(repository, branch) whose rules require GitHub's merge queue."""
    queued: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(repository, base branch) -> the pull requests in its merge queue, in order."""
    _computed: dict[tuple[str, int], tuple[str | None, str | None]] = field(default_factory=dict)
    _updates: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def public_key(self) -> Any:
        return serialization.load_pem_private_key(self.key.encode(), None).public_key()

    def install(self, installation: int, repository: str, **permissions: str) -> None:
        entry = self.installations.setdefault(installation, {"repositories": [],
                                                             "permissions": {}})  # fmt: skip
        entry["repositories"].append(repository)
        entry["permissions"].update(permissions)

    def app_secret(self, installation: int) -> dict[str, str]:
        """What a Secret for the App's *installation* holds, under the FactorySpec's keys."""
        return {"app-id": self.app_id, "installation-id": str(installation),
                "private-key": self.key}  # fmt: skip

    def personal_token(self, repository: str, **permissions: str) -> str:
        """A plain token (as a person creates one) with *permissions* on *repository*."""
        token = "github_pat_" + secrets.token_hex(18)
        self.grants[token] = Grant(
            0, [repository], permissions, datetime.now(UTC) + timedelta(days=90)
        )
        return token

    def create_repository(self, full_name: str, seed: Path) -> Path:
        """A bare repository *full_name* cloned from the git repository *seed*."""
        assert self.root is not None, "FakeGitHub(root=...) serves repositories"
        bare = self.root / f"{full_name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
        return bare

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next *times* API calls with *status* (403: a spent primary rate limit
        that resets within the second)."""
        if status == 403:
            self.rate_limit("primary", times)
        else:
            self._inject([lambda: (status, {"message": "injected by the fake"}, {})] * times)

    def rate_limit(
        self, kind: Literal["primary", "secondary"], times: int = 1, *, seconds: int = 1,
        retry_after: bool = False, status: int = 403,
    ) -> None:  # fmt: skip
        """Refuse the next *times* API calls as GitHub does when a rate limit is hit: the
        primary one (403, remaining 0, resets in *seconds*) or a secondary one (403 or 429
        with a message, and a Retry-After header when *retry_after*)."""

        def reply() -> Reply:
            if kind == "primary":
                reset = int(time.time()) + seconds
                return status, {"message": "API rate limit exceeded for installation ID 7."}, {
                    "X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core",
                }  # fmt: skip
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes"
                       " before you try again.")  # fmt: skip
            return (
                status,
                {"message": message},
                {"Retry-After": str(seconds)} if retry_after else {},
            )

        self._inject([reply] * times)

    def _inject(self, replies: list[Callable[[], Reply]]) -> None:
        """A chaos rule answering the next calls with *replies*, in order."""
        pending = list(replies)
        with self._lock:
            self.chaos.append(lambda _m, _p: Fault(pending.pop(0)()) if pending else None)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def clone_url(self, repository: str) -> str:
        return f"{self.url}/{repository}.git"

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                raw = self._body()
                url = urlsplit(self.path)
                if ".git/" in url.path:
                    status, headers, data = fake.git_http(self.command, url.path, url.query,
                                                          dict(self.headers), raw)  # fmt: skip
                else:
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    try:
                        status, payload, headers = fake.handle(
                            self.command, url.path, dict(self.headers),
                            json.loads(raw or b"null"), query,
                        )  # fmt: skip
                    except Exception as exc:  # a bug in the fake: say so, do not hang up
                        status, payload, headers = 500, {"message": f"fake: {exc!r}"}, {}
                    data = json.dumps(payload).encode()
                    headers = {"Content-Type": "application/json; charset=utf-8", **headers}
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server names

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if log := os.environ.get("AGENTFACTORY_GITHUB_EXCHANGES"):  # for conformance figures
            with open(log, "a") as out:
                for x in self.exchanges:
                    out.write(json.dumps(dataclasses.asdict(x)) + "\n")
        if kind is None and self.conform:
            divergences = self.divergences()
            assert not divergences, "GitHub's description does not allow:\n" + "\n".join(
                dict.fromkeys(divergences)
            )

    # -- requests ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: Any,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        with self._lock:
            self.calls.append((method, path))
            self.call_times.append(time.monotonic())
            rule = next(filter(None, (r(method, path) for r in self.chaos)), None)
        if rule is not None and not rule.after:
            reply = rule.reply
        else:
            served = self._serve(method, path, headers, body, query)
            reply = served if rule is None else rule.reply
            if rule is None:
                reply = self._paged(method, path, query or {}, reply)
                reply = (reply[0], _as_github(method, path, reply[0], reply[1]), reply[2])
        with self._lock:
            self.exchanges.append(Exchange(method, path.removeprefix("/api/v3"), dict(query or {}),
                                           body, reply[0], reply[1], rule is not None))  # fmt: skip
        return reply

    def _paged(self, method: str, path: str, query: dict[str, str], reply: Reply) -> Reply:
        """One page of a list answer (`page`, `per_page`), with GitHub's `Link` header to
        the next and last pages; a list inside an object (check runs, a combined status)
        is paged the same way."""
        status, payload, headers = reply
        key = next((k for k in ("check_runs", "statuses") if isinstance(payload, dict)
                    and isinstance(payload.get(k), list)), None)  # fmt: skip
        items = payload if isinstance(payload, list) else payload.get(key) if key else None
        if method != "GET" or status != 200 or items is None:
            return reply
        size = min(int(query.get("per_page", self.page_size)), 100)
        page = int(query.get("page", 1))
        last = max(1, -(-len(items) // size))
        shown = items[(page - 1) * size : page * size]
        links = [(n, rel) for n, rel in ((page + 1, "next"), (last, "last"), (page - 1, "prev"),
                                         (1, "first")) if 1 <= n <= last and n != page]  # fmt: skip
        if links:
            url = f"{self.url}{path}?"
            pages = [f'<{url}{urlencode({**query, "page": n})}>; rel="{rel}"' for n, rel in links]
            headers = {**headers, "Link": ", ".join(pages)}
        return status, shown if key is None else {**payload, key: shown}, headers

    def divergences(self) -> list[str]:
        """How the exchanges so far differ from GitHub's description: each request against
        the operation it names, each answer the fake gave against what that operation
        documents (an injected fault is GitHub's to give on any call)."""
        from testbed.github_openapi import description

        found = []
        for x in self.exchanges:
            if x.path == _GRAPHQL.removeprefix("/api/v3"):
                continue  # held to GitHub's GraphQL schema as it was served
            op, problems = description().request(x.method, x.path, x.query, x.body)
            if op is not None and not x.injected:
                problems += description().response(op, x.status, x.answer)
            found += [f"{x.method} {x.path} -> {x.status}: {p}" for p in problems]
        return found

    def _serve(
        self, method: str, path: str, headers: dict[str, str], body: Any,
        query: dict[str, str] | None,
    ) -> Reply:  # fmt: skip
        if method == "POST" and (match := _TOKENS.match(path)):
            return self._mint(int(match["installation"]), headers, body or {})
        if method == "POST" and path == _GRAPHQL:
            return self._graphql(headers, body or {})
        if match := _REPO.match(path):
            full, rest = f"{match['owner']}/{match['name']}", match["rest"] or ""
            args: list[str]
            if rest.startswith("/rules/branches/"):
                shape, args = "/rules/branches", [rest.removeprefix("/rules/branches/")]
            elif rest.startswith(("/git/refs/heads/", "/git/ref/heads/", "/compare/")):
                shape, _, tail = rest.partition("/heads/") if "/heads/" in rest else (
                    "/compare", "", rest.removeprefix("/compare/"))  # fmt: skip
                args = [tail]
            else:
                shape = re.sub(r"/\d+(?=/|$)", "/N",
                               re.sub(r"/[0-9a-f]{40}(?=/|$)", "/SHA", rest))  # fmt: skip
                args = re.findall(r"/([0-9a-f]{40}|\d+)(?=/|$)", rest)
            route = ROUTES.get((method, shape))
            if route is None:
                return 404, {"message": "Not Found"}, {}
            permission, level, serve = route
            denied = self._authorize(headers, full, permission, level)
            if denied:
                return denied
            with self._lock:
                return serve(self, full, args, body, query or {})
        return 404, {"message": "Not Found"}, {}

    # -- repositories, pull requests, comments -------------------------------------------

    def _get_repo(self, full: str, _n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        return 200, self._repo(full), {}

    def head_of(self, full: str, branch: str) -> str | None:
        return self._git(full, "rev-parse", "--verify", "-q", f"refs/heads/{branch}") or None

    def _git(self, full: str, *args: str, stdin: str = "", index: bool = False) -> str:
        """git's output in *full*'s bare repository (see `_run`)."""
        return self._run(full, *args, stdin=stdin, index=index).stdout.strip()

    def _run(
        self, full: str, *args: str, stdin: str = "", index: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """git in *full*'s bare repository, committing as GitHub does (with a scratch index
        of the repository's own when *index*)."""
        assert self.root is not None
        env = {"PATH": os.environ["PATH"], "GIT_AUTHOR_NAME": "GitHub",
               "GIT_AUTHOR_EMAIL": "noreply@github.com", "GIT_COMMITTER_NAME": "GitHub",
               "GIT_COMMITTER_EMAIL": "noreply@github.com"}  # fmt: skip
        if index:
            env["GIT_INDEX_FILE"] = str(self.root / f"{full}.index")
        return subprocess.run(["git", *args], cwd=self.root / f"{full}.git", env=env,
                              input=stdin, capture_output=True, text=True, check=False)  # fmt: skip

    def _merged_tree(self, full: str, ours: str, theirs: str) -> str | None:
        """The tree of merging *theirs* into *ours*, or None on a conflict."""
        out = self._run(full, "merge-tree", "--write-tree", ours, theirs)
        return out.stdout.split()[0] if out.returncode == 0 else None

    def push(self, full: str, branch: str, sha: str) -> None:
        """Someone else pushes to *branch* (a racing push, a moved base)."""
        self._git(full, "update-ref", f"refs/heads/{branch}", sha)

    def commit(self, full: str, parent: str, path: str, text: str, message: str) -> str:
        """A commit on top of *parent* that writes *path* (for moving a base in tests)."""
        blob = self._git(full, "hash-object", "-w", "--stdin", stdin=text)
        self._git(full, "read-tree", parent, index=True)
        self._git(full, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}",
                  index=True)  # fmt: skip
        tree = self._git(full, "write-tree", index=True)
        return self._git(full, "commit-tree", tree, "-p", parent, "-m", message)

    def _pull_json(self, full: str, pull: dict[str, Any], one: bool = True) -> dict[str, Any]:
        """The PR as GitHub shows it: mergeability only when it is asked for on its own (a
        list leaves it out)."""
        head, base = pull["head"], pull["base"]
        head_sha, base_sha = self.head_of(full, head), self.head_of(full, base)
        if pull["merged"]:
            head_sha = pull["merged_head"]
        shown = {k: v for k, v in pull.items() if k != "merged_head"}
        if one:
            shown["mergeable"] = self._mergeable(full, pull, head_sha, base_sha)
        node_id = "PR_" + base64.b64encode(f"{full}#{pull['number']}".encode()).decode()
        return {**shown, "node_id": node_id,
                "head": {"ref": head, "label": f"{full.split('/')[0]}:{head}",
                                 "sha": head_sha},
                "base": {"ref": base, "sha": base_sha},
                "html_url": f"{self.url}/{full}/pull/{pull['number']}",
                "url": f"{self.url}/api/v3/repos/{full}/pulls/{pull['number']}"}  # fmt: skip

    def _mergeable(
        self, full: str, pull: dict[str, Any], head_sha: str | None, base_sha: str | None
    ) -> bool | None:
        """Whether the PR merges cleanly; null at the first read after either side moved, as
        GitHub answers while it computes that after a push."""
        if self._computed.get((full, pull["number"])) != (head_sha, base_sha):
            self._computed[full, pull["number"]] = (head_sha, base_sha)
            return None
        if pull["merged"] or not head_sha or not base_sha:
            return None
        return self._merged_tree(full, base_sha, head_sha) is not None

    def _list_pulls(self, full: str, _n: list[str], _b: Any, q: dict[str, str]) -> Reply:
        owner = full.split("/")[0]
        found = [p for p in self.pulls.get(full, {}).values()
                 if q.get("state", "open") in ("all", p["state"])
                 and ("head" not in q or q["head"] == f"{owner}:{p['head']}")
                 and ("base" not in q or q["base"] == p["base"])]  # fmt: skip
        return 200, [self._pull_json(full, p, one=False) for p in found], {}

    def _create_pull(self, full: str, _n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        head, base = body["head"].split(":")[-1], body["base"]
        if self.head_of(full, head) is None or self.head_of(full, base) is None:
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                },
                {},
            )
        if self._git(full, "rev-list", "--count", f"{base}..{head}") == "0":
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom",
                 "message": f"No commits between {base} and {head}"}]}, {}  # fmt: skip
        owner = full.split("/")[0]
        if any(p["head"] == head and p["state"] == "open"
               for p in self.pulls.get(full, {}).values()):  # fmt: skip
            exists = f"A pull request already exists for {owner}:{head}."
            return 422, {"message": "Validation Failed", "errors": [{"message": exists}]}, {}
        number = self._next_number()
        pull = {"number": number, "id": number, "state": "open", "title": body["title"],
                "body": body.get("body") or "", "head": head, "base": base, "merged": False,
                "merged_at": None, "merge_commit_sha": None, "merged_head": None,
                "labels": []}  # fmt: skip
        self.pulls.setdefault(full, {})[number] = pull
        return 201, self._pull_json(full, pull), {}

    def _get_pull(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        pull = self.pulls.get(full, {}).get(int(n[0]))
        return (
            (200, self._pull_json(full, pull), {}) if pull else (404, {"message": "Not Found"}, {})
        )

    def _edit_pull(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        pull = self.pulls.get(full, {}).get(int(n[0]))
        if pull is None:
            return 404, {"message": "Not Found"}, {}
        pull.update({k: body[k] for k in ("title", "body", "state") if k in body})
        return 200, self._pull_json(full, pull), {}

    def _compare(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        base, _, head = n[0].partition("...")
        behind = self._git(full, "rev-list", "--count", f"{head}..{base}")
        ahead = self._git(full, "rev-list", "--count", f"{base}..{head}")
        if not behind or not ahead:
            return 404, {"message": "Not Found"}, {}
        state = "identical" if behind == ahead == "0" else "behind" if ahead == "0" else (
            "ahead" if behind == "0" else "diverged")  # fmt: skip
        return 200, {"status": state, "ahead_by": int(ahead), "behind_by": int(behind),
                     "url": f"{self.url}/api/v3/repos/{full}/compare/{n[0]}"}, {}  # fmt: skip

    def _update_branch(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        """Merge the base into the PR's branch, as GitHub's "Update branch" button does."""
        pull = self.pulls.get(full, {}).get(int(n[0]))
        if pull is None or pull["state"] != "open":
            return 404, {"message": "Not Found"}, {}
        head, base = self.head_of(full, pull["head"]), self.head_of(full, pull["base"])
        if (body or {}).get("expected_head_sha") not in (None, head):
            return 422, {"message": "expected head sha didn't match current head ref."}, {}
        assert head is not None and base is not None
        tree = self._merged_tree(full, head, base)
        if tree is None:
            return 422, {"message": "merge conflict between base and head"}, {}
        message = f"Merge branch '{pull['base']}' into {pull['head']}"

        done = threading.Event()

        def update() -> None:  # later, as GitHub does: the 202 only says it was accepted
            with self._lock:
                if done.is_set():
                    return
                done.set()
                merged = self._git(full, "commit-tree", tree, "-p", head, "-p", base, "-m",
                                   message)  # fmt: skip
                self.push(full, pull["head"], merged)

        self._updates.append(update)
        timer = threading.Timer(self.update_delay, update)
        timer.daemon = True
        timer.start()
        url = f"{self.url}/{full}/pull/{pull['number']}"
        return 202, {"message": "Updating pull request branch.", "url": url}, {}

    def _merge(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        pull = self.pulls.get(full, {}).get(int(n[0]))
        if pull is None or pull["state"] != "open":
            return 405 if pull else 404, {"message": "Pull Request is not mergeable"}, {}
        head, base = self.head_of(full, pull["head"]), self.head_of(full, pull["base"])
        assert head is not None and base is not None
        if (body or {}).get("sha") not in (None, head):
            return 409, {"message": "Head branch was modified. Review and try the merge again."}, {}
        tree = self._merged_tree(full, base, head)
        if tree is None:
            return 405, {"message": "Pull Request is not mergeable"}, {}
        method = (body or {}).get("merge_method", "merge")
        if method not in self._allowed(full):
            kinds = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}
            return 405, {"message": f"{kinds[method]} are not allowed on this repository."}, {}
        refused = self._protected(full, pull, head)
        if refused:
            return 405, {"message": refused}, {}
        if (full, pull["base"]) in self.merge_queues:
            return 405, {"message": "Repository rule violations found\n\nChanges must be made"
                                    " through the merge queue\n\n"}, {}  # fmt: skip
        if method == "rebase":
            return 405, {"message": "the fake does not rebase; use squash or merge"}, {}
        message = "\n\n".join(
            x
            for x in (
                (body or {}).get("commit_title") or pull["title"],
                (body or {}).get("commit_message") or "",
            )
            if x
        )
        merged = self._land(full, pull, tree, head, base, method, message)
        return 200, {"sha": merged, "merged": True,
                     "message": "Pull Request successfully merged"}, {}  # fmt: skip

    def _land(self, full: str, pull: dict[str, Any], tree: str, head: str, base: str,
              method: str, message: str) -> str:  # fmt: skip
        """Commit *tree* on the base as the merge of *pull* at *head*; the merge commit."""
        parents = ["-p", base] + (["-p", head] if method == "merge" else [])
        merged = self._git(full, "commit-tree", tree, *parents, "-m", message)
        self.push(full, pull["base"], merged)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        pull.update(state="closed", merged=True, merged_at=now, merge_commit_sha=merged,
                    merged_head=head)  # fmt: skip
        return merged

    # -- GitHub's merge queue ----------------------------------------------------------------

    def require_merge_queue(self, full: str, branch: str) -> None:
        """A ruleset now requires GitHub's merge queue for *branch* of *full*."""
        with self._lock:
            self.merge_queues.add((full, branch))

    def _branch_rules(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        if (full, n[0]) not in self.merge_queues:
            return 200, [], {}
        return 200, [{**_MERGE_QUEUE_RULE, "ruleset_source_type": "Repository",
                      "ruleset_source": full, "ruleset_id": 1}], {}  # fmt: skip

    def settle_merge_queue(
        self, full: str, base: str, failing: frozenset[int] = frozenset()
    ) -> list[int]:
        """Play the queue's checks on each queued pull request in order: one in *failing*, or
        one that conflicts with the base as it now is, leaves the queue unmerged; the others
        merge. The numbers merged."""
        merged = []
        with self._lock:
            for number in self.queued.pop((full, base), []):
                pull = self.pulls[full][number]
                head, tip = self.head_of(full, pull["head"]), self.head_of(full, base)
                assert head is not None and tip is not None
                tree = self._merged_tree(full, tip, head)
                if number in failing or tree is None:
                    continue
                self._land(full, pull, tree, head, tip, "merge",
                           f"Merge pull request #{number} from {pull['head']}")  # fmt: skip
                merged.append(number)
        return merged

    def _graphql(self, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        """A GraphQL request, validated against GitHub's schema, then answered for the two
        things the fake models: a pull request node's merge-queue state, and enqueueing one."""
        import graphql

        auth = headers.get("Authorization", "")
        grant = self.grants.get(auth.split(" ", 1)[1] if " " in auth else "")
        if grant is None or grant.expires_at <= datetime.now(UTC):
            return 401, {"message": "Bad credentials"}, {}
        schema = _graphql_schema()
        try:
            document = graphql.parse(str(body.get("query") or ""))
        except graphql.GraphQLError as exc:
            return 200, {"errors": [{"message": exc.message}]}, {}
        if errors := graphql.validate(schema, document):
            return 200, {"errors": [{"message": e.message} for e in errors]}, {}

        def pull_of(node_id: str, permission: str, level: str) -> tuple[str, dict[str, Any]]:
            said = base64.b64decode(node_id.removeprefix("PR_")).decode()
            full, _, number = said.rpartition("#")
            pull = self.pulls.get(full, {}).get(int(number))
            if pull is None or full not in grant.repositories:
                unknown = f"Could not resolve to a node with the global id of '{node_id}'"
                raise graphql.GraphQLError(unknown)
            if _level(grant.permissions.get(permission)) < _level(level):
                raise graphql.GraphQLError("Resource not accessible by integration")
            return full, pull

        def entry(full: str, pull: dict[str, Any]) -> dict[str, Any] | None:
            line = self.queued.get((full, pull["base"]), [])
            if pull["number"] not in line:
                return None
            return {"position": line.index(pull["number"]) + 1, "state": "AWAITING_CHECKS"}

        def node(_info: Any, id: str) -> dict[str, Any]:
            full, pull = pull_of(id, "pull_requests", "read")
            queued = entry(full, pull)
            return {"__typename": "PullRequest", "merged": pull["merged"],
                    "isInMergeQueue": queued is not None, "mergeQueueEntry": queued}  # fmt: skip

        def enqueue(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
            full, pull = pull_of(input["pullRequestId"], "contents", "write")
            if (full, pull["base"]) not in self.merge_queues:
                raise graphql.GraphQLError("Pull request is not in a merge queue enabled branch")
            if pull["state"] != "open":
                raise graphql.GraphQLError("Pull request is closed")
            head = self.head_of(full, pull["head"])
            if input.get("expectedHeadOid") not in (None, head):
                raise graphql.GraphQLError("Head sha didn't match expected head sha")
            line = self.queued.setdefault((full, pull["base"]), [])
            if pull["number"] not in line:
                line.append(pull["number"])
            return {"mergeQueueEntry": entry(full, pull)}

        with self._lock:
            result = graphql.execute(
                schema, document, root_value={"node": node, "enqueuePullRequest": enqueue},
                variable_values=body.get("variables") or {},
            )  # fmt: skip
        assert isinstance(result, graphql.ExecutionResult), "resolvers here are synchronous"
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        return 200, answer, {}

    def _allowed(self, full: str) -> set[str]:
        """The merge methods *full*'s settings allow."""
        return self.merge_methods.get(full, {"merge", "squash", "rebase"})

    def finish_updates(self) -> None:
        """GitHub finishes the branch updates it accepted, now."""
        for update in self._updates:
            update()
        self._updates.clear()

    def protect(self, full: str, branch: str, rule: Protection) -> None:
        """Protect *branch* of *full* by *rule*, as a repository admin does."""
        with self._lock:
            self.protection[full, branch] = rule

    def _protected(self, full: str, pull: dict[str, Any], head: str) -> str | None:
        """GitHub's message for the rule of the base branch that the PR's head breaks."""
        rule = self.protection.get((full, pull["base"]))
        if rule is None:
            return None
        passed = {s["context"] for s in self.statuses.get((full, head), {}).values()
                  if s["state"] == "success"} | {r["name"] for r in self.check_runs.get(
                      (full, head), {}).values() if r["conclusion"] == "success"}  # fmt: skip
        missing = [c for c in rule.required_checks if c not in passed]
        if len(missing) == 1:
            return f'Required status check "{missing[0]}" is expected.'
        if missing:
            required = len(rule.required_checks)
            return f"{len(missing)} of {required} required status checks are expected."
        latest: dict[str, str] = {}
        for review in self.reviews.get((full, pull["number"]), []):
            if review["state"] in ("APPROVED", "CHANGES_REQUESTED"):
                latest[review["user"]["login"]] = review["state"]
        approvals = sum(state == "APPROVED" for state in latest.values())
        if approvals < rule.required_approvals:
            plural = "review is" if rule.required_approvals == 1 else "reviews are"
            return (f"At least {rule.required_approvals} approving {plural} required by"
                    " reviewers with write access.")  # fmt: skip
        return None

    def add_review(
        self, full: str, number: int, login: str, state: str, commit_id: str, body: str = "",
        comments: tuple[tuple[str, int, str], ...] = (),
    ) -> None:  # fmt: skip
        """A person reviews the PR at *commit_id* (APPROVED, CHANGES_REQUESTED, COMMENTED),
        with a *body* and line *comments* (path, line, text)."""
        with self._lock:
            reviews = self.reviews.setdefault((full, number), [])
            for path, line, text in comments:
                notes = self.review_comments.setdefault((full, number), [])
                notes.append({"id": 5000 + len(notes), "user": {"login": login}, "path": path,
                              "line": line, "body": text, "commit_id": commit_id,
                              "pull_request_review_id": 1 + len(reviews)})  # fmt: skip
            reviews.append({"id": 1 + len(reviews), "user": {"login": login}, "state": state,
                            "commit_id": commit_id, "body": body,
                            "submitted_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                            "html_url": f"{self.url}/{full}/pull/{number}#review"})  # fmt: skip

    def _review_comments(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        return 200, list(self.review_comments.get((full, int(n[0])), [])), {}

    def _reviews(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        return 200, list(self.reviews.get((full, int(n[0])), [])), {}

    def _set_labels(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        stored = self._stored(full, int(n[0]))
        if stored is None:
            return 404, {"message": "Not Found"}, {}
        stored["labels"] = [self._label(full, name) for name in _label_names(body)]
        return 200, stored["labels"], {}

    def _get_ref(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        sha = self.head_of(full, n[0])
        if sha is None:
            return 404, {"message": "Not Found"}, {}
        return (
            200,
            {
                "ref": f"refs/heads/{n[0]}",
                "object": {"sha": sha, "type": "commit"},
                "url": f"{self.url}/api/v3/repos/{full}/git/refs/heads/{n[0]}",
            },
            {},
        )

    def _delete_ref(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        if self.head_of(full, n[0]) is None:
            return 422, {"message": "Reference does not exist"}, {}
        self._git(full, "update-ref", "-d", f"refs/heads/{n[0]}")
        return 204, None, {}

    def open_issue(self, full: str, title: str, body: str, labels: list[str]) -> int:
        """An issue opened by a person, with *labels* (as a triager set them)."""
        with self._lock:
            number = self._next_number()
            self.issues.setdefault(full, {})[number] = {
                "number": number, "id": number, "title": title, "body": body, "state": "open",
                "labels": [self._label(full, name) for name in labels],
            }  # fmt: skip
        return number

    def _next_number(self) -> int:
        taken = [n for kind in (self.pulls, self.issues) for numbers in kind.values()
                 for n in numbers]  # fmt: skip
        return 1 + max(taken, default=0)

    def _label(self, full: str, name: str) -> dict[str, str]:
        return {"name": name, "url": f"{self.url}/api/v3/repos/{full}/labels/{name}"}

    def _issue(self, full: str, number: int) -> dict[str, Any] | None:
        """Issue *number* as GitHub's issues API shows it (a PR is an issue too)."""
        if (pull := self.pulls.get(full, {}).get(number)) is not None:
            shown = {k: pull[k] for k in ("number", "id", "title", "body", "state", "labels")}
            return shown | {"pull_request": {"url": self._pull_json(full, pull)["url"]}}
        issue = self.issues.get(full, {}).get(number)
        return None if issue is None else dict(issue)

    def _issue_json(self, full: str, issue: dict[str, Any]) -> dict[str, Any]:
        return {**issue, "url": f"{self.url}/api/v3/repos/{full}/issues/{issue['number']}",
                "html_url": f"{self.url}/{full}/issues/{issue['number']}"}  # fmt: skip

    def _get_issue(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        issue = self._issue(full, int(n[0]))
        if issue is None:
            return 404, {"message": "Not Found"}, {}
        return 200, self._issue_json(full, issue), {}

    def _list_issues(self, full: str, _n: list[str], _b: Any, q: dict[str, str]) -> Reply:
        wanted = {name for name in q.get("labels", "").split(",") if name}
        numbers = sorted([*self.pulls.get(full, {}), *self.issues.get(full, {})])
        found = [issue for n in numbers if (issue := self._issue(full, n)) is not None
                 and q.get("state", "open") in ("all", issue["state"])
                 and wanted <= {label["name"] for label in issue["labels"]}]  # fmt: skip
        return 200, [self._issue_json(full, issue) for issue in found], {}

    def _add_labels(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        stored = self._stored(full, int(n[0]))
        if stored is None:
            return 404, {"message": "Not Found"}, {}
        have = {label["name"] for label in stored["labels"]}
        stored["labels"] += [self._label(full, name) for name in _label_names(body)
                             if name not in have]  # fmt: skip
        return 200, stored["labels"], {}

    def _stored(self, full: str, number: int) -> dict[str, Any] | None:
        """The stored PR or plain issue *number* (the issues API serves both)."""
        return self.pulls.get(full, {}).get(number) or self.issues.get(full, {}).get(number)

    def add_check_run(self, full: str, sha: str, name: str, status: str = "completed",
                      conclusion: str | None = "success", summary: str = "") -> None:  # fmt: skip
        """A CI system reports a check run on *sha* (the latest per name is listed)."""
        with self._lock:
            runs = self.check_runs.setdefault((full, sha), {})
            run_id = 1 + sum(len(r) for r in self.check_runs.values())
            runs[name] = {"id": run_id, "name": name, "head_sha": sha, "status": status,
                          "conclusion": conclusion,
                          "output": {"title": name, "summary": summary},
                          "url": f"{self.url}/api/v3/repos/{full}/check-runs/{run_id}",
                          "html_url": f"{self.url}/{full}/runs/{run_id}"}  # fmt: skip

    def add_status(self, full: str, sha: str, context: str, state: str,
                   description: str = "") -> None:  # fmt: skip
        """A CI system sets a commit status on *sha* (the latest per context counts)."""
        with self._lock:
            self.statuses.setdefault((full, sha), {})[context] = {
                "context": context,
                "state": state,
                "description": description,
                "target_url": f"{self.url}/ci/{context}/{sha}",
                "url": f"{self.url}/api/v3/repos/{full}/statuses/{sha}",
            }

    def _get_commit(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        shas = self._git(full, "rev-list", "--parents", "-n1", n[0]).split()
        if not shas:
            return 422, {"message": f"No commit found for SHA: {n[0]}"}, {}
        url = f"{self.url}/api/v3/repos/{full}/commits"
        parents = [{"sha": p, "url": f"{url}/{p}"} for p in shas[1:]]
        return 200, {"sha": n[0], "url": f"{url}/{n[0]}", "parents": parents}, {}

    def _check_runs(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        runs = list(self.check_runs.get((full, n[0]), {}).values())
        return 200, {"total_count": len(runs), "check_runs": runs}, {}

    def _status(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        statuses = list(self.statuses.get((full, n[0]), {}).values())
        states = {s["state"] for s in statuses}
        combined = ("failure" if states & {"failure", "error"} else
                    "pending" if "pending" in states or not states else "success")  # fmt: skip
        return 200, {"state": combined, "sha": n[0], "total_count": len(statuses),
                     "statuses": statuses}, {}  # fmt: skip

    def _comment_json(self, full: str, cid: int) -> dict[str, Any]:
        return {"id": cid, "body": self.comments[cid]["body"],
                "url": f"{self.url}/api/v3/repos/{full}/issues/comments/{cid}"}  # fmt: skip

    def _list_comments(self, full: str, n: list[str], _b: Any, _q: dict[str, str]) -> Reply:
        ids = [c for c, v in self.comments.items() if v["issue"] == (full, int(n[0]))]
        return 200, [self._comment_json(full, c) for c in ids], {}

    def _create_comment(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        if self._issue(full, int(n[0])) is None:
            return 404, {"message": "Not Found"}, {}
        cid = 1 + max(self.comments, default=1000)
        self.comments[cid] = {"issue": (full, int(n[0])), "body": body["body"]}
        return 201, self._comment_json(full, cid), {}

    def _edit_comment(self, full: str, n: list[str], body: Any, _q: dict[str, str]) -> Reply:
        if int(n[0]) not in self.comments:
            return 404, {"message": "Not Found"}, {}
        self.comments[int(n[0])]["body"] = body["body"]
        return 200, self._comment_json(full, int(n[0])), {}

    def git_http(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """git's smart HTTP through `git http-backend`, for tokens that may: fetching needs
        contents:read, pushing contents:write."""
        with self._lock:
            self.calls.append((method, path))
            self.call_times.append(time.monotonic())
        full_name = path.lstrip("/").split(".git/")[0]
        pushing = "git-receive-pack" in path or "service=git-receive-pack" in query
        token = _basic_password(headers.get("Authorization", ""))
        denied = self._authorize({"Authorization": f"token {token}"}, full_name, "contents",
                                 "write" if pushing else "read")  # fmt: skip
        if denied is not None:
            status = 401 if denied[0] in (401, 404) else 403
            return status, {"WWW-Authenticate": 'Basic realm="GitHub"'}, b"denied\n"
        assert self.root is not None
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "REQUEST_METHOD": method,
            "QUERY_STRING": query, "CONTENT_TYPE": headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "x-access-token",
            "HTTP_CONTENT_ENCODING": headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": headers.get("Git-Protocol", ""),
        }  # fmt: skip
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                             check=False).stdout  # fmt: skip
        head, _, data = out.partition(b"\r\n\r\n")
        status, reply = 200, {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                reply[name] = value
        return status, reply, data

    def _mint(
        self, installation: int, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        auth = headers.get("Authorization", "")
        try:
            claims = jwt.decode(
                auth.removeprefix("Bearer "),
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return 401, {"message": f"A JSON web token could not be decoded: {exc}"}, {}
        if str(claims["iss"]) != self.app_id or claims["exp"] - claims["iat"] > 600:
            return 401, {"message": "'Issuer' claim ('iss') must be the App id; at most 10 min"}, {}
        entry = self.installations.get(installation)
        if entry is None:
            return 404, {"message": "Not Found"}, {}
        owner = entry["repositories"][0].split("/")[0] if entry["repositories"] else ""
        asked = [f"{owner}/{name}" for name in body.get("repositories") or []]
        repositories = asked or list(entry["repositories"])
        if any(r not in entry["repositories"] for r in repositories):
            return 422, {"message": "There is at least one repository that does not exist or"
                         " is not accessible to the parent installation."}, {}  # fmt: skip
        granted = dict(entry["permissions"])
        permissions = body.get("permissions") or granted
        for name, level in permissions.items():
            if _level(granted.get(name)) < _level(level):
                return 422, {"message": f"The permissions requested are not granted to this"
                             f" installation: {name}={level}"}, {}  # fmt: skip
        token = "ghs_" + secrets.token_hex(18)
        expires = datetime.now(UTC).replace(microsecond=0) + self.token_lifetime
        self.grants[token] = Grant(installation, repositories, dict(permissions), expires)
        return 201, {
            "token": token, "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "permissions": permissions, "repository_selection": "selected",
            "repositories": [self._repo(r) for r in repositories],
        }, {}  # fmt: skip

    def _authorize(
        self, headers: dict[str, str], repository: str, permission: str, level: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        auth = headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if " " in auth else ""
        grant = self.grants.get(token)
        if grant is None or grant.expires_at <= datetime.now(UTC):
            return 401, {"message": "Bad credentials"}, {}
        if repository not in grant.repositories:
            return 404, {"message": "Not Found"}, {}
        if permission != "metadata" and _level(grant.permissions.get(permission)) < _level(level):
            return 403, {"message": "Resource not accessible by integration"}, {}
        return None

    def _repo(self, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        allowed = self._allowed(full_name)
        return {"id": abs(hash(full_name)) % 10**8, "name": name, "full_name": full_name,
                "allow_merge_commit": "merge" in allowed,
                "allow_squash_merge": "squash" in allowed,
                "allow_rebase_merge": "rebase" in allowed,
                "owner": {"login": owner}, "private": True, "default_branch": "main",
                "clone_url": self.clone_url(full_name),
                "url": f"{self.url}/api/v3/repos/{full_name}"}  # fmt: skip


#: (method, path after the repository with numbers as N) -> (permission, level, handler).
ROUTES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("GET", ""): ("metadata", "read", FakeGitHub._get_repo),
    ("GET", "/pulls"): ("pull_requests", "read", FakeGitHub._list_pulls),
    ("POST", "/pulls"): ("pull_requests", "write", FakeGitHub._create_pull),
    ("GET", "/pulls/N"): ("pull_requests", "read", FakeGitHub._get_pull),
    ("PATCH", "/pulls/N"): ("pull_requests", "write", FakeGitHub._edit_pull),
    ("GET", "/issues/N"): ("pull_requests", "read", FakeGitHub._get_issue),
    ("GET", "/issues"): ("issues", "read", FakeGitHub._list_issues),
    ("POST", "/issues/N/labels"): ("issues", "write", FakeGitHub._add_labels),
    ("GET", "/issues/N/comments"): ("pull_requests", "read", FakeGitHub._list_comments),
    ("POST", "/issues/N/comments"): ("pull_requests", "write", FakeGitHub._create_comment),
    ("PATCH", "/issues/comments/N"): ("pull_requests", "write", FakeGitHub._edit_comment),
    ("GET", "/commits/SHA"): ("contents", "read", FakeGitHub._get_commit),
    ("GET", "/pulls/N/reviews"): ("pull_requests", "read", FakeGitHub._reviews),
    ("GET", "/pulls/N/comments"): ("pull_requests", "read", FakeGitHub._review_comments),
    ("PUT", "/issues/N/labels"): ("pull_requests", "write", FakeGitHub._set_labels),
    ("GET", "/compare"): ("contents", "read", FakeGitHub._compare),
    ("PUT", "/pulls/N/update-branch"): ("contents", "write", FakeGitHub._update_branch),
    ("PUT", "/pulls/N/merge"): ("contents", "write", FakeGitHub._merge),
    ("GET", "/git/ref"): ("contents", "read", FakeGitHub._get_ref),
    ("GET", "/git/refs"): ("contents", "read", FakeGitHub._get_ref),
    ("DELETE", "/git/refs"): ("contents", "write", FakeGitHub._delete_ref),
    ("GET", "/commits/SHA/check-runs"): ("checks", "read", FakeGitHub._check_runs),
    ("GET", "/commits/SHA/status"): ("statuses", "read", FakeGitHub._status),
    ("GET", "/rules/branches"): ("metadata", "read", FakeGitHub._branch_rules),
}


@functools.cache
def _graphql_schema() -> Any:
    """GitHub's GraphQL schema, built once per process. GitHub marks some implementations'
    fields deprecated where the interface's are not, which graphql-core's schema check
    refuses; a deprecation changes nothing a request may ask, so the marks are dropped."""
    import graphql

    from testbed.github_openapi import graphql_schema_path

    sdl = re.sub(r'@deprecated(\((?:[^()"]|"(?:[^"\\]|\\.)*")*\))?', "",
                 graphql_schema_path().read_text())  # fmt: skip
    return graphql.build_ast_schema(graphql.parse(sdl), assume_valid_sdl=True)


def _as_github(method: str, path: str, status: int, answer: Any) -> Any:
    """*answer* in the shape GitHub documents for it: the objects the fake models, completed
    with the required fields it does not model (each of its documented type); an error with
    its `documentation_url`, as GitHub sends one."""
    from testbed.github_openapi import description

    if isinstance(answer, dict) and status >= 400:
        answer = {"documentation_url": "https://docs.github.com/rest", **answer}
    op = description().operation(method, path.removeprefix("/api/v3"))
    schema = None if op is None else description().answer_schema(op, status)
    return answer if schema is None else description().fill(schema, answer)


def _label_names(body: Any) -> list[str]:
    """Label names from a request body: a list or {"labels": [...]}, of names or objects."""
    given = body if isinstance(body, list) else (body or {}).get("labels", [])
    return [x if isinstance(x, str) else x["name"] for x in given]


def _basic_password(header: str) -> str:
    if not header.startswith("Basic "):
        return ""
    return base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")[2]


def _level(value: str | None) -> int:
    return {"read": 1, "write": 2, "admin": 3}.get(value or "", 0)
