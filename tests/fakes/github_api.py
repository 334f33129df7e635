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
- Faults on demand: `fail(status, times)` answers the next requests with that status (a 403
  with `x-ratelimit-remaining: 0` for a rate limit, GitHub's shape), to drive PyGithub's retry.

`calls` logs (method, path) of every request, for counting what a feature costs.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_TOKENS = re.compile(r"^/api/v3/app/installations/(?P<installation>\d+)/access_tokens$")
_REPO = re.compile(r"^/api/v3/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)$")


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


@dataclass
class FakeGitHub:
    """The fake: one App with installations, over repositories named OWNER/REPO."""

    app_id: str = "4242"
    key: str = field(default_factory=private_key)
    installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    """installation id -> {"repositories": [full names], "permissions": {name: level}}."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)
    token_lifetime: timedelta = timedelta(hours=1)
    _faults: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def public_key(self) -> Any:
        return serialization.load_pem_private_key(self.key.encode(), None).public_key()

    def install(self, installation: int, repository: str, **permissions: str) -> None:
        entry = self.installations.setdefault(installation, {"repositories": [],
                                                             "permissions": {}})  # fmt: skip
        entry["repositories"].append(repository)
        entry["permissions"].update(permissions)

    def fail(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([status] * times)

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
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                status, payload, headers = fake.handle(
                    self.command, self.path.split("?")[0], dict(self.headers), body
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server names

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- requests ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.calls.append((method, path))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return _fault(fault)
        if method == "POST" and (match := _TOKENS.match(path)):
            return self._mint(int(match["installation"]), headers, body or {})
        if method == "GET" and (match := _REPO.match(path)):
            full = f"{match['owner']}/{match['name']}"
            denied = self._authorize(headers, full, "metadata", "read")
            if denied:
                return denied
            return 200, self._repo(full), {}
        return 404, {"message": "Not Found"}, {}

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
        return {"id": abs(hash(full_name)) % 10**8, "name": name, "full_name": full_name,
                "owner": {"login": owner}, "private": True, "default_branch": "main",
                "clone_url": self.clone_url(full_name),
                "url": f"{self.url}/api/v3/repos/{full_name}"}  # fmt: skip


def _level(value: str | None) -> int:
    return {"read": 1, "write": 2, "admin": 3}.get(value or "", 0)


def _fault(status: int) -> tuple[int, Any, dict[str, str]]:
    if status == 403:  # a primary rate limit, as GitHub reports one
        reset = int((datetime.now(UTC) + timedelta(seconds=1)).timestamp())
        return (
            403,
            {"message": "API rate limit exceeded"},
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset), "retry-after": "0"},
        )
    return status, {"message": "injected by the fake"}, {}
