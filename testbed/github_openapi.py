"""GitHub's own description of its REST API (`@octokit/openapi`, fetched by
`tests/github/description.sh`), for holding the fake GitHub and the adapter to it: which
operation a request is, whether its parameters and body are what the operation takes, whether
an answer is one it documents, and the least answer that is (the fake fills its own answers
from it, so every required field is there with its documented type).

OpenAPI 3.0 schemas are JSON Schema draft 4 plus `nullable`; `nullable` becomes an `anyOf`
with null once, on loading, and jsonschema validates the rest with a registry over the whole
document (so every `$ref` resolves where GitHub wrote it).
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

VERSION = "23.0.2"
BASE = "urn:github-openapi"
#: Answers GitHub may give to any call, documented in its prose rather than per operation.
ANY_CALL = {401, 403, 429, 500, 502, 503, 504}
#: Known gaps between GitHub's schema and GitHub, each with its reason:
#: (method, operation path) -> what is allowed there.
KNOWN_GAPS = {
    ("PUT", "/repos/{owner}/{repo}/issues/{issue_number}/labels"): "request body",
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"): "request body",
}
"""PyGithub sends labels as a bare array of names, which GitHub's prose allows ("you can
also pass an array of labels directly") and its schema's `oneOf` does not."""


def path() -> Path:
    """Where `tests/github/description.sh` put the description."""
    root = os.environ.get("AGENTFACTORY_GITHUB_OPENAPI_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "agentfactory/github-openapi"
    )
    found = Path(root) / VERSION / "api.github.com.json"
    if not found.exists():
        fix = "run `bash tests/github/description.sh` (the README's test line does)"
        raise RuntimeError(f"GitHub's API description is missing at {found}: {fix}")
    return found


#: The pinned version of GitHub's GraphQL schema (`tests/github/description.sh` fetches it).
GRAPHQL_VERSION = "15.26.1"


def graphql_schema_path() -> Path:
    """Where `tests/github/description.sh` put GitHub's GraphQL schema (SDL)."""
    return path().parent.parent / f"graphql-{GRAPHQL_VERSION}" / "schema.graphql"


def recorded(scenario: str) -> list[dict[str, Any]]:
    """The exchanges of one `@octokit/fixtures` scenario, as recorded with the real GitHub
    (method, path, status, response, headers), fetched beside the description."""
    root = path().parent.parent / "fixtures-23.1.2" / scenario / "normalized-fixture.json"
    exchanges: list[dict[str, Any]] = json.loads(root.read_text())
    return exchanges


def _nullable(node: Any) -> Any:
    """*node* with OpenAPI's `nullable: true` said as JSON Schema says it."""
    if isinstance(node, list):
        return [_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _json_schema(where: str) -> str:
    """The pointer of the JSON schema of the request body or answer at *where*."""
    return f"{where}/content{_pointer('application/json')}/schema"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: dict[str, Any]
    where: str
    """The JSON pointer of the operation in the document."""
    path: dict[str, str]
    """The path parameters' values in the request."""


@dataclass(eq=False)  # one per process, hashed by identity for the validator cache
class Description:
    document: dict[str, Any]
    _least: dict[int, Any] = field(default_factory=dict)

    @cached_property
    def registry(self) -> Registry[Any]:
        resource = Resource.from_contents(self.document, default_specification=DRAFT4)
        return Registry().with_resource(BASE, resource)

    @cached_property
    def _routes(self) -> list[tuple[re.Pattern[str], str]]:
        """Operation paths as patterns, the most literal first (`/pulls/{n}/merge` before
        `/pulls/{n}/{anything}`); a parameter is one segment, or more when it is the last
        (a ref such as `heads/main`)."""
        routes = []
        for template in self.document["paths"]:
            pattern = re.sub(r"\\\{\w+\\\}$", "(.+)", re.escape(template))
            pattern = re.sub(r"\\\{\w+\\\}", "([^/]+)", pattern)
            routes.append((re.compile(f"^{pattern}$"), template))
        return sorted(routes, key=lambda r: -len(re.sub(r"\{[^}]*\}", "", r[1])))

    def resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """A `$ref`'d object and its pointer (None: *node* was inline)."""
        ref = node.get("$ref")
        if ref is None:
            return node, None
        target: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target, ref.removeprefix("#")

    def operation(self, method: str, path: str) -> Operation | None:
        for pattern, template in self._routes:
            ops = self.document["paths"][template]
            if (match := pattern.match(path)) and method.lower() in ops:
                names = re.findall(r"\{([^}]+)\}", template)
                return Operation(method, template, ops[method.lower()],
                                 _pointer("paths", template, method.lower()),
                                 dict(zip(names, match.groups(), strict=True)))  # fmt: skip
        return None

    def _errors(self, where: str, instance: Any) -> list[str]:
        validator = _validator(self, where)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
                for e in validator.iter_errors(instance)]  # fmt: skip

    def request(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[Operation | None, list[str]]:
        """The operation *method path* is, and how the request differs from what it takes."""
        op = self.operation(method, path)
        if op is None:
            return None, [f"{method} {path}: no such operation"]
        problems = []
        values = {"path": op.path, "query": query}
        known = set()
        for i, given in enumerate(op.spec.get("parameters", [])):
            param, where = self.resolve(given)
            where = where or f"{op.where}/parameters/{i}"
            place = param["in"]
            if place not in values:
                continue
            known.add((place, param["name"]))
            if param["name"] not in values[place]:
                if param.get("required"):
                    problems.append(f"{place} parameter {param['name']} is required")
                continue
            value = _typed(param.get("schema", {}), values[place][param["name"]])
            problems += [f"{place} parameter {param['name']}: {e}"
                         for e in self._errors(f"{where}/schema", value)]  # fmt: skip
        problems += [f"query parameter {name} is not one the operation takes"
                     for name in query if ("query", name) not in known]  # fmt: skip
        taken = op.spec.get("requestBody")
        if body is not None and taken is None:
            problems.append("a body the operation does not take")
        elif taken is not None:
            taken, where = self.resolve(taken)
            where = where or f"{op.where}/requestBody"
            if body is None:
                if taken.get("required"):
                    problems.append("the operation requires a body")
            elif "application/json" in taken.get("content", {}):
                problems += [f"body: {e}" for e in self._errors(_json_schema(where), body)]
        if (method, op.template) in KNOWN_GAPS and problems:
            return op, []
        return op, problems

    def _answer(self, op: Operation, status: int) -> tuple[dict[str, Any], str] | None:
        """*op*'s documented answer of *status* (or its default), and its pointer."""
        responses = op.spec["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            return None
        answer, where = self.resolve(responses[key])
        return answer, where or f"{op.where}/responses/{key}"

    def response(self, op: Operation, status: int, body: Any) -> list[str]:
        """How an answer of *status* with *body* differs from what *op* documents."""
        documented = self._answer(op, status)
        if documented is None:
            if status in ANY_CALL:
                return []
            return [f"{status} is not an answer {op.method} {op.template} documents"
                    f" ({', '.join(op.spec['responses'])})"]  # fmt: skip
        answer, where = documented
        if "schema" not in answer.get("content", {}).get("application/json", {}):
            return []
        return [f"response: {e}" for e in self._errors(_json_schema(where), body)]

    def answer_schema(self, op: Operation, status: int) -> dict[str, Any] | None:
        """The schema of *op*'s documented JSON answer of *status*, if it has one."""
        documented = self._answer(op, status)
        content = documented[0].get("content", {}) if documented else {}
        schema: dict[str, Any] | None = content.get("application/json", {}).get("schema")
        return schema

    def fill(self, node: dict[str, Any], value: Any) -> Any:
        """*value* completed to *node*'s shape: each object it holds gains the required
        properties it lacks, as `least` makes them; what it has is kept as it is."""
        return _fill(self, node, value)

    def least(self, name: str) -> Any:
        """The least instance of schema *name* that validates: every required property, of
        its documented type."""
        return self.least_of(self.document["components"]["schemas"][name])

    def least_of(self, node: dict[str, Any]) -> Any:
        key = id(self.resolve(node)[0])
        if key not in self._least:
            self._least[key] = _least(self, node)
        return copy.deepcopy(self._least[key])


def _least(description: Description, node: dict[str, Any], within: frozenset[int] = frozenset()
           ) -> Any:  # fmt: skip
    """See `Description.least`; a nullable object is made, not left null (GitHub fills them:
    clients read `check_suite.id` without asking), unless it is one being made already."""
    node, _ = description.resolve(node)
    if id(node) in within:
        return None
    within = within | {id(node)}
    if "allOf" in node:
        out: dict[str, Any] = {}
        for part in node["allOf"]:
            out |= _least(description, part, within)
        return out
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [description.resolve(o)[0] for o in node[key]]
            made = [o for o in options if o.get("type") != "null"]
            return _least(description, made[0], within) if made else None
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type", "object")
    if kind == "object":
        props = node.get("properties", {})
        return {k: _least(description, props.get(k, {}), within) for k in node.get("required", [])}
    if kind == "array":
        item = node.get("items", {})
        return [_least(description, item, within) for _ in range(node.get("minItems", 0))]
    if kind == "string":
        formats = {"date-time": "2026-01-01T00:00:00Z", "uri": "https://github.invalid/",
                   "email": "noreply@github.invalid"}  # fmt: skip
        return formats.get(node.get("format", ""), "")
    return {"integer": 0, "number": 0, "boolean": False}.get(kind)


def _fill(description: Description, node: dict[str, Any], value: Any) -> Any:
    node, _ = description.resolve(node)
    if value is None:
        return None
    for part in node.get("allOf", []):
        value = _fill(description, part, value)
    for key in ("anyOf", "oneOf"):
        options = [description.resolve(o)[0] for o in node.get(key, [])]
        fitting = [o for o in options if _fits(o, value)]
        if fitting:
            return _fill(description, fitting[0], value)
    if isinstance(value, dict) and node.get("type", "object") == "object" and "allOf" not in node:
        props = node.get("properties", {})
        least = description.least_of(node)
        out = least if isinstance(least, dict) else {}
        out |= {k: _fill(description, props.get(k, {}), v) for k, v in value.items()}
        return out
    if isinstance(value, list) and node.get("type") == "array":
        return [_fill(description, node.get("items", {}), v) for v in value]
    return value


def _fits(node: dict[str, Any], value: Any) -> bool:
    """Whether *value* is of the kind *node* describes (the `oneOf` option to fill it by)."""
    kind = node.get("type", "object" if "properties" in node or "allOf" in node else None)
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
             "boolean": bool, "null": type(None)}  # fmt: skip
    return kind is None or isinstance(value, kinds.get(kind, object))


def _typed(schema: dict[str, Any], value: str) -> Any:
    """A query or path value as the parameter's type (they travel as text)."""
    kind = schema.get("type")
    if kind == "integer" and value.lstrip("-").isdigit():
        return int(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "array":
        return value.split(",")
    return value


@cache
def _validator(description: Description, where: str) -> Any:
    schema = {"$ref": f"{BASE}#{where}"}
    return jsonschema.Draft4Validator(schema, registry=description.registry)


@cache
def description() -> Description:
    """The pinned description, loaded once per process."""
    return Description(_nullable(json.loads(path().read_text())))
