"""The adapter against answers the real GitHub gave: exchanges recorded by `@octokit/fixtures`
for the operations the adapter uses, served back to it as they were recorded."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from testbed.github_openapi import description, recorded

from agentfactory.core.github import github_repository
from agentfactory.forge.github import GitHubForge, GitHubToken
from agentfactory.forge.github_auth import failed
from github import GithubException
from tests.githubs import PACING

if TYPE_CHECKING:
    from pathlib import Path

#: Headers that describe the recorded transfer, not the answer.
TRANSFER = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class Replay:
    """Serves recorded exchanges (GitHub Enterprise's layout, `/api/v3/...`): a request gets
    the recorded answer of the same method and path; `asked` lists what the adapter sent."""

    def __init__(self, exchanges: list[dict[str, Any]]) -> None:
        self.exchanges, self.asked = exchanges, list[tuple[str, str]]()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path.removeprefix("/api/v3")
                replay.asked.append((self.command, path))
                found = next((x for x in replay.exchanges
                              if (x["method"].upper(), urlsplit(x["path"]).path)
                              == (self.command, path)), None)  # fmt: skip
                if found is None:
                    status, body, headers = 404, {"message": "Not Found"}, {}
                else:
                    status, body = found["status"], found["response"]
                    headers = found.get("headers") or {}
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in TRANSFER:
                        self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> Replay:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clone_url(self, repository: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{repository}.git"


def test_the_adapter_reads_the_repository_as_github_answered_it(tmp_path: Path) -> None:
    [exchange] = recorded("get-repository")
    assert description().request("GET", urlsplit(exchange["path"]).path, {}, None)[1] == []
    with Replay([exchange]) as replay:
        repository = github_repository(replay.clone_url("octokit-fixture-org/hello-world"))
        forge = GitHubForge.at(GitHubToken(repository, "ghp_recorded", PACING), tmp_path)
        try:
            forge.verify()  # the token reaches the repository: GitHub answered 200
            assert forge.refusals("squash") == [], "GitHub's answer allows every method"
        finally:
            forge.close()
    assert set(replay.asked) == {("GET", "/repos/octokit-fixture-org/hello-world")}


def test_a_real_validation_error_is_explained_field_by_field() -> None:
    [exchange] = recorded("errors")
    assert exchange["status"] == 422
    said = str(failed("creating a label", GithubException(422, exchange["response"], {})))
    assert said == "creating a label: 422 Validation Failed: Label color invalid"
