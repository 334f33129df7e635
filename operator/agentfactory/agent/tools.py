"""The tools each role may call, as Messages API tool definitions, and their dispatch.

Reviewers and the planner read only. The implementer may also write inside its scope, run
checks and allow-listed programs, and see its diff. Each role answers through one `submit_*`
tool whose input schema is the role's output model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfactory.agent.workspace import ToolError, Workspace
from agentfactory.core.handoff import ImplementationOutput, PlanOutput, Role, VerdictOutput
from agentfactory.core.schema import inline_schema

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import BaseModel

    from agentfactory.core.handoff import HandoffContract


def _tool(name: str, description: str, **properties: Any) -> dict[str, Any]:
    required = [key for key, value in properties.items() if not value.pop("optional", False)]
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": properties, "required": required},
    }


_PATH = {"type": "string", "description": "Path relative to the repository root."}
TOOLS: dict[str, dict[str, Any]] = {
    "list_files": _tool(
        "list_files",
        "List the repository's files (tracked and new) under a directory.",
        path={**_PATH, "optional": True},
    ),
    "read_file": _tool(
        "read_file",
        "Read a text file with line numbers; optionally a range of lines.",
        path=_PATH,
        start={"type": "integer", "minimum": 1, "optional": True},
        end={"type": "integer", "minimum": 1, "optional": True},
    ),
    "search": _tool(
        "search",
        "Search file contents with an extended regular expression (git grep).",
        pattern={"type": "string"},
        path={**_PATH, "optional": True},
    ),
    "write_file": _tool(
        "write_file",
        "Create or overwrite a file inside the task's scope.",
        path=_PATH,
        content={"type": "string"},
    ),
    "replace_in_file": _tool(
        "replace_in_file",
        "Replace one exact occurrence of `old` with `new` in a file inside the task's scope.",
        path=_PATH,
        old={"type": "string"},
        new={"type": "string"},
    ),
    "run_command": _tool(
        "run_command",
        "Run one of the factory's checks exactly as listed, or an allow-listed program.",
        command={"type": "string"},
    ),
    "shell": _tool(
        "shell",
        "Run a shell command in the repository (pipes allowed), without the factory's"
        " secrets. Changes it makes outside the task's scope, or to protected paths, are put"
        " back as they were.",
        command={"type": "string"},
    ),
    "git_diff": _tool("git_diff", "Show the changes made so far against the base commit."),
}


@dataclass(frozen=True)
class RoleSpec:
    """What a role may do and how it answers."""

    role: Role
    tools: tuple[str, ...]
    writable: bool
    output: type[BaseModel]
    submit: str
    allowed_programs: tuple[str, ...] = ()

    def definitions(self) -> list[dict[str, Any]]:
        """The tool definitions sent with every request."""
        submit = {
            "name": self.submit,
            "description": "Submit your final answer. Call it once, when you are done.",
            "input_schema": inline_schema(self.output),
        }
        return [TOOLS[name] for name in self.tools] + [submit]


_READ = ("list_files", "read_file", "search")
#: Programs the implementer may run besides the checks (no shell, so no pipes or chains).
PROGRAMS = ("pytest", "python", "python3", "ruff", "mypy", "node", "npm", "npx", "go", "cargo")
ROLES: dict[Role, RoleSpec] = {
    Role.PLANNER: RoleSpec(Role.PLANNER, _READ, False, PlanOutput, "submit_plan"),
    Role.PLAN_REVIEWER: RoleSpec(Role.PLAN_REVIEWER, _READ, False, VerdictOutput, "submit_verdict"),
    Role.IMPLEMENTER: RoleSpec(
        Role.IMPLEMENTER,
        (*_READ, "write_file", "replace_in_file", "run_command", "shell", "git_diff"),
        True,
        ImplementationOutput,
        "submit_implementation",
        allowed_programs=PROGRAMS,
    ),
    Role.CODE_REVIEWER: RoleSpec(
        Role.CODE_REVIEWER, (*_READ, "git_diff"), False, VerdictOutput, "submit_verdict"
    ),
}


def workspace_for(contract: HandoffContract, root: Path) -> Workspace:
    """The workspace at *root* with the contract's rules and its role's rights."""
    spec = ROLES[contract.role]
    return Workspace(
        root=root,
        scope=contract.scope,
        protected=contract.protected_paths,
        checks=contract.checks,
        allowed_programs=spec.allowed_programs,
        writable=spec.writable,
        command_timeout=contract.limits.command_timeout_seconds,
    )


def dispatch(
    workspace: Workspace, spec: RoleSpec, name: str, args: dict[str, Any], base: str | None
) -> str:
    """Run tool *name* for a role; raises ToolError with a message for the model."""
    if name not in spec.tools:
        raise ToolError(f"{name} is not available to the {spec.role}; use {', '.join(spec.tools)}")
    try:
        if name == "list_files":
            return workspace.list_files(str(args.get("path", ".")))
        if name == "read_file":
            end = args.get("end")
            return workspace.read_file(
                str(args["path"]), int(args.get("start", 1)), int(end) if end else None
            )
        if name == "search":
            return workspace.search(str(args["pattern"]), str(args.get("path", ".")))
        if name == "write_file":
            return workspace.write_file(str(args["path"]), str(args["content"]))
        if name == "replace_in_file":
            return workspace.replace_in_file(str(args["path"]), str(args["old"]), str(args["new"]))
        if name == "run_command":
            run = workspace.run_command(str(args["command"]))
            return f"exit code {run.exit_code} ({run.status})\n{run.output_tail}"
        if name == "shell":
            return workspace.run_shell(str(args["command"]))
        return workspace.git_diff(base) or "no changes yet"
    except KeyError as missing:
        raise ToolError(f"{name} needs the argument {missing}") from None
