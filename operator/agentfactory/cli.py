"""The `agentfactory` command line: thin wrappers that read files and print.

Subcommands: `crds` (write or check the generated CRDs), `validate` (check manifests
offline). The local runner, the agent runner and the operator join as they are built.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agentfactory import __version__
from agentfactory.manifests.crds import all_crds, chart_crd, render_yaml
from agentfactory.manifests.reference import reference
from agentfactory.validation import validate_paths

if TYPE_CHECKING:
    from collections.abc import Sequence


def _crds(args: argparse.Namespace) -> int:
    out_dir, chart = Path(args.output_dir), Path(args.chart_dir) / "templates" / "crds"
    files = {out_dir / name: render_yaml(crd) for name, crd in all_crds().items()}
    if args.chart_dir:
        files |= {chart / name: chart_crd(crd) for name, crd in all_crds().items()}
    return _write_or_check(files, check=args.check, command="agentfactory crds")


def _docs(args: argparse.Namespace) -> int:
    return _write_or_check({Path(args.output): reference()}, check=args.check,
                           command="agentfactory docs")  # fmt: skip


def _write_or_check(files: dict[Path, str], *, check: bool, command: str) -> int:
    """Write generated *files*, or with *check* only say which differ from what is on disk."""
    stale: list[str] = []
    for path, text in files.items():
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `{command}` and commit the result",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    loaded, problems = validate_paths(args.files)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        print(problem)
    if not loaded and not problems:
        print("no manifests found; name YAML files or directories", file=sys.stderr)
        return 1
    warnings = sum(1 for p in problems if p.severity == "warning")
    notes = len(problems) - len(errors) - warnings
    summary = f"{len(loaded)} valid, {len(errors)} errors, {warnings} warnings"
    summary += f", {notes} not checked" if notes else ""
    print(summary, file=sys.stderr)
    return 1 if errors else 0


def _agent(args: argparse.Namespace) -> int:
    # Imported here: the agent pulls in the anthropic SDK, which `validate` does not need.
    from agentfactory.agent.entrypoint import run_agent

    return run_agent(
        role=args.role,
        input_dir=Path(args.input),
        workspace=Path(args.workspace),
        output=Path(args.output),
        replay=Path(args.replay) if args.replay else None,
        engine=args.engine,
    )


def _collect(args: argparse.Namespace) -> int:
    from agentfactory.agent.entrypoint import collect_result

    return collect_result(role=args.role, input_dir=Path(args.input),
                          workspace=Path(args.workspace), output=Path(args.output))  # fmt: skip


def _checks(args: argparse.Namespace) -> int:
    from agentfactory.agent.entrypoint import run_checks

    return run_checks(
        input_dir=Path(args.input), workspace=Path(args.workspace), output=Path(args.output)
    )


def _checkout(args: argparse.Namespace) -> int:
    from agentfactory.agent.checkout import (
        EXIT_ACCESS_REFUSED,
        AccessRefusedError,
        CheckoutError,
        checkout,
    )

    try:
        checkout(
            repo=args.repo,
            ref=args.ref,
            dest=Path(args.dest),
            credentials=Path(args.credentials) if args.credentials else None,
        )
    except AccessRefusedError as exc:
        print(exc, file=sys.stderr)
        return EXIT_ACCESS_REFUSED
    except CheckoutError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _context(args: argparse.Namespace) -> int:
    from agentfactory.context import NotARepositoryError, select_context

    try:
        selection = select_context(
            Path(args.repo),
            goal=args.goal,
            scope=args.scope,
            files=args.file,
            budget_tokens=args.budget_tokens,
        )
    except NotARepositoryError as exc:
        print(f"agentfactory context: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(selection.as_dict(), indent=2))
        return 0
    share = selection.tokens / max(1, selection.repo_tokens)
    print(
        f"{len(selection.picked)} files, {selection.tokens} of {args.budget_tokens} budget tokens"
        f" ({share:.1%} of the repository's {selection.repo_tokens})"
    )
    for pick in selection.picked:
        print(f"  {pick.tokens:>7}  {pick.path}  ({pick.reason})")
    for pick in selection.skipped[:20]:
        print(f"  skipped {pick.path}: {pick.tokens} tokens do not fit ({pick.reason})")
    for missing in selection.missing:
        print(f"  not found: {missing}")
    return 0


def _local(args: argparse.Namespace) -> int:
    from agentfactory.local.command import run_local

    return run_local(list(args.args), state=Path(args.state), by=args.by, fresh=args.fresh,
                     replay=args.replay, live=args.live)  # fmt: skip


def _graph(args: argparse.Namespace) -> int:
    from agentfactory.pictures.graph import TaskNode, task_graph_svg

    if args.namespace:
        import asyncio

        from agentfactory.kube.auth import AuthError, connect
        from agentfactory.kube.cluster_tasks import task_nodes

        try:
            connection = connect(args.kubeconfig, args.context)
        except AuthError as exc:
            print(f"agentfactory graph: {exc}", file=sys.stderr)
            return 2
        nodes: list[TaskNode] = asyncio.run(task_nodes(connection, args.namespace))
        title = f"agenttasks in {args.namespace}"
    else:
        from agentfactory.local.pictures import run_records
        from agentfactory.pictures.report import node_of

        try:
            nodes = [node_of(record) for record in run_records(Path(args.state))]
        except FileNotFoundError as exc:
            print(f"agentfactory graph: {exc}", file=sys.stderr)
            return 2
        title = f"agentfactory local: {args.state}"
    svg = task_graph_svg(nodes, title=title)
    if args.output == "-":
        sys.stdout.write(svg)
    else:
        Path(args.output).write_text(svg, encoding="utf-8")
        print(f"wrote {args.output}: {len(nodes)} tasks", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    import agentfactory.controller.factories
    import agentfactory.controller.serve
    import agentfactory.controller.settings
    import agentfactory.controller.tasks
    from agentfactory.kube.auth import AuthError, Connection, connect
    from agentfactory.kube.client import unreachable

    try:
        connection = (
            Connection(server=args.server, source="--server")
            if args.server
            else connect(args.kubeconfig, args.context)
        )
    except AuthError as exc:
        print(f"agentfactory run: {exc}", file=sys.stderr)
        return 2
    problem = asyncio.run(unreachable(connection))
    if problem:
        print(f"agentfactory run: cannot use the API server {connection.server} (from"
              f" {connection.source}): {problem}; check that the cluster is up and the"
              " kubeconfig's server and credentials, or pass --kubeconfig FILE or --server"
              " URL", file=sys.stderr)  # fmt: skip
        return 2
    agentfactory.controller.settings.use(connection)

    # Structured by default: one JSON object per line, with the object's namespace and name,
    # which is what log collectors in a cluster index.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    memo = kopf.Memo(
        workdir=args.workdir, metrics_port=args.metrics_port,
        resync_seconds=args.resync_seconds,
        github_poll_seconds=args.github_poll_seconds, peering_lifetime=args.peering_lifetime,
        unschedulable_seconds=args.unschedulable_seconds,
        namespaces=args.namespace or [],
    )  # fmt: skip
    if bool(args.gateway_url) != bool(args.gateway_signing_key_file):
        print("agentfactory run: --gateway-url and --gateway-signing-key-file go together (the"
              " operator signs each stage pod's token with the key the gateway checks it"
              " with); give both, or neither to hand pods the model key",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.gateway_url:
        from agentfactory.kube.model_gateway import ModelGateway

        key = _signing_key(args.gateway_signing_key_file, "run")
        if key is None:
            return 2
        memo.gateway = ModelGateway(args.gateway_url, key)
    # kopf's peering identity, made here so that the workers know which peer they are.
    memo.identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}/{os.getpid()}"
    namespaces = args.namespace or []
    asyncio.run(kopf.operator(
        identity=memo.identity,
        clusterwide=not namespaces, namespaces=namespaces, memo=memo,
        # kopf treats a named peering as mandatory and then waits for its CRD even when
        # standalone, so the name goes only where peering is wanted.
        standalone=args.standalone, peering_name=None if args.standalone else args.peering,
        priority=args.priority,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port
        else None,
    ))  # fmt: skip
    return 0


def _signing_key(path: str, command: str) -> bytes | None:
    """The gateway's signing key from *path*, or None (said) when it cannot be used."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        print(f"agentfactory {command}: cannot read the gateway's signing key: {exc}",
              file=sys.stderr)  # fmt: skip
        return None
    if len(key) < 32:
        print(f"agentfactory {command}: the gateway's signing key in {path} is {len(key)} bytes;"
              " use at least 32 random bytes (the chart makes one)", file=sys.stderr)  # fmt: skip
        return None
    return key


def _gateway(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from agentfactory.controller.gateway_process import run_gateway
    from agentfactory.kube.auth import AuthError, Connection, connect

    key = _signing_key(args.signing_key_file, "gateway")
    if key is None:
        return 2
    try:
        connection = (Connection(server=args.server, source="--server") if args.server
                      else connect(args.kubeconfig, args.context))  # fmt: skip
    except AuthError as exc:
        print(f"agentfactory gateway: {exc}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    host = host or "0.0.0.0"  # noqa: S104 - a Service's backend, behind its NetworkPolicy
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run_gateway(connection, key, host, int(port), args.upstream))
    return 0


def _session_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The pod contract's arguments of a stage session: its role and where its files are."""
    roles = ["planner", "plan-reviewer", "implementer", "code-reviewer"]
    parser.add_argument("--role", required=True, choices=roles)
    parser.add_argument("--input", default="/factory/input", help="the handoff contract directory")
    parser.add_argument("--workspace", default="/workspace", help="the git working tree")
    parser.add_argument("--output", default="/factory/output/result.json", help="result file")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="agentfactory",
        description="Run an AI software factory: spec'd changes in, reviewed merged code out.",
    )
    parser.add_argument("--version", action="version", version=f"agentfactory {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", default="crds", help="directory to write (default: crds)")
    crds.add_argument(
        "--chart-dir", default="charts/agentfactory",
        help="the Helm chart whose templates/crds/ get the same CRDs ('' to skip)",
    )  # fmt: skip
    crds.add_argument(
        "--check", action="store_true", help="exit 1 if the files differ instead of writing"
    )
    crds.set_defaults(run=_crds)

    docs = commands.add_parser("docs", help="write the field reference generated from the models")
    docs.add_argument("--output", default="docs/reference.md", help="file to write")
    docs.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs instead of writing"
    )
    docs.set_defaults(run=_docs)

    validate = commands.add_parser(
        "validate", help="validate FactorySpec and AgentTask manifests offline"
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML files or directories")
    validate.set_defaults(run=_validate)

    agent = _session_arguments(commands.add_parser(
        "agent", help="run one stage's agent (the entrypoint of the agent image)"))  # fmt: skip
    agent.add_argument(
        "--replay",
        default=os.environ.get("AGENTFACTORY_REPLAY"),
        help="answer from a recorded script instead of the API (labelled as a replay)",
    )
    agent.add_argument(
        "--engine",
        choices=["builtin", "claude-code"],
        default="builtin",
        help="what runs the session: the factory's own runner, or Claude Code",
    )
    agent.set_defaults(run=_agent)

    collect = _session_arguments(
        commands.add_parser("collect", help="read and check what an agent image wrote")
    )
    collect.set_defaults(run=_collect)

    checks = commands.add_parser(
        "checks", help="run a factory's checks on a workspace (the CI pod's entrypoint)"
    )
    checks.add_argument("--input", default="/factory/input", help="directory with checks.json")
    checks.add_argument("--workspace", default="/workspace", help="the git working tree")
    checks.add_argument("--output", default="/factory/output/result.json", help="result file")
    checks.set_defaults(run=_checks)
    checkout = commands.add_parser(
        "checkout", help="clone a repository at a commit (the agent pod's init container)"
    )
    checkout.add_argument("--repo", required=True, help="clone URL")
    checkout.add_argument("--ref", required=True, help="commit to check out")
    checkout.add_argument("--dest", default="/workspace", help="where to clone")
    checkout.add_argument("--credentials", help="directory with an optional `token` file")
    checkout.set_defaults(run=_checkout)

    context = commands.add_parser("context", help="show the files an agent would be given")
    context.add_argument("--repo", default=".", help="git working tree (default: .)")
    context.add_argument("--goal", required=True, help="the task's goal")
    context.add_argument("--scope", nargs="*", default=[], metavar="GLOB", help="scope.paths")
    context.add_argument("--file", action="append", default=[], help="a context.files entry")
    context.add_argument("--budget-tokens", type=int, default=30_000, help="default: 30000")
    context.add_argument("--json", action="store_true", help="print the selection as JSON")
    context.set_defaults(run=_context)

    local = commands.add_parser(
        "local",
        help="run the factory on this machine (or: local approve|retry|cancel TASK)",
        description="Run FactorySpecs and AgentTasks from files with local sandboxes and a git"
        " forge. `local approve TASK`, `local retry TASK` and `local cancel TASK` act on a saved"
        " run and resume it.",
    )
    local.add_argument("args", nargs="+", metavar="DIR|FILE|ACTION", help="manifests, or an action")
    local.add_argument("--state", default=".agentfactory", help="state directory (.agentfactory)")
    local.add_argument("--by", help="who approves or retries (default: $USER)")
    local.add_argument("--fresh", action="store_true", help="discard the saved state first")
    local.add_argument(
        "--replay",
        action="store_true",
        help="agents answer from the recorded"
        " replays beside the manifests (the default when they cover every task)",
    )
    local.add_argument(
        "--live",
        action="store_true",
        help="agents call the model with"
        " $ANTHROPIC_API_KEY even where replays exist (it costs money)",
    )
    local.set_defaults(run=_local)
    graph = commands.add_parser(
        "graph",
        help="draw the task DAG coloured by phase (SVG), of a local run or a namespace",
        description="Draw the tasks and their dependencies, each coloured by its phase: of a"
        " local run (--state) or of the AgentTasks in a namespace (--namespace, read with your"
        " kubeconfig).",
    )
    graph.add_argument("--state", default=".agentfactory", help="a local run's state directory")
    graph.add_argument("--namespace", help="read the AgentTasks of this namespace instead")
    graph.add_argument("--kubeconfig", help="kubeconfig file (default: as kubectl finds it)")
    graph.add_argument("--context", help="kubeconfig context (default: its current context)")
    graph.add_argument("-o", "--output", default="tasks.svg", help="file to write ('-': stdout)")
    graph.set_defaults(run=_graph)
    run = commands.add_parser(
        "run",
        help="run the operator (kopf): in a cluster, or with your kubeconfig",
        description="Run the operator. It finds the API server as kubectl does: --kubeconfig or"
        " $KUBECONFIG (its current context or --context; client certificates, tokens and exec"
        " credential plugins), else the pod's service account, else ~/.kube/config. TLS is"
        " always verified.",
    )
    run.add_argument("--namespace", action="append", help="watch this namespace (repeatable;"
                     " default: all namespaces)")  # fmt: skip
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, the pod's"
                     " service account, ~/.kube/config)")  # fmt: skip
    run.add_argument("--context", help="kubeconfig context (default: its current context)")
    run.add_argument("--server", help="an API server URL that needs no credentials, such as"
                     " `kubectl proxy`'s (instead of a kubeconfig)")  # fmt: skip
    run.add_argument(
        "--workdir",
        default="/tmp/agentfactory",  # noqa: S108 - the operator pod's emptyDir
        help="where the forges keep their clones",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="/metrics, /readyz (0: off)")
    run.add_argument("--liveness-port", type=int, default=8081, help="/healthz (0: off)")
    run.add_argument("--peering", default="agentfactory", help="kopf peering name (one active"
                     " replica)")  # fmt: skip
    run.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    run.add_argument(
        "--priority",
        type=int,
        default=random.randint(1, 2**31 - 1),  # noqa: S311 - not secret
        help="peering priority: the live replica with the highest is active; replicas with equal"
        " priorities all pause, so the default is random",
    )
    run.add_argument("--peering-lifetime", type=int, default=60, help="seconds a silent replica"
                     " counts as alive (the failover time)")  # fmt: skip
    run.add_argument("--resync-seconds", type=float, default=30, help="pass period without events")
    run.add_argument("--github-poll-seconds", type=float, default=15,
                     help="how often a task's PR reviews and checks are read at most")  # fmt: skip
    run.add_argument("--unschedulable-seconds", type=float, default=600,
                     help="how long a stage pod the scheduler cannot place may wait (for an"
                     " autoscaler) before its attempt fails")  # fmt: skip
    run.add_argument("--log-format", choices=["json", "full", "plain"], default="json",
                     help="json (default): one object per line; full: timestamped text;"
                     " plain: messages only")  # fmt: skip
    run.add_argument("--verbose", action="store_true", help="debug logs")
    run.add_argument("--gateway-url", default=os.environ.get("AGENTFACTORY_GATEWAY_URL"),
                     help="the model gateway's URL: stage pods get a token for their attempt"
                     " and this address instead of the model key")  # fmt: skip
    run.add_argument("--gateway-signing-key-file",
                     default=os.environ.get("AGENTFACTORY_GATEWAY_SIGNING_KEY_FILE"),
                     help="the key the operator signs attempt tokens with")  # fmt: skip
    run.set_defaults(run=_run)

    gateway = commands.add_parser(
        "gateway",
        help="run the model gateway: it holds the model keys, meters every token per attempt"
        " and enforces budgets and rate limits",
    )
    gateway.add_argument("--listen", default="0.0.0.0:8080",
                         help="host:port to serve on")  # fmt: skip
    gateway.add_argument("--signing-key-file", required=True,
                         help="the key attempt tokens are signed with")  # fmt: skip
    gateway.add_argument("--upstream", default=os.environ.get("AGENTFACTORY_UPSTREAM", ""),
                         help="the Messages API to forward to (default: Anthropic's; a grant"
                         " naming its factory's baseURL wins)")  # fmt: skip
    gateway.add_argument("--kubeconfig",
                         help="kubeconfig (default: the pod's service account)")  # fmt: skip
    gateway.add_argument("--context", help="kubeconfig context")
    gateway.add_argument("--server", help="an API server URL that needs no credentials")
    gateway.set_defaults(run=_gateway)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentfactory` command (*argv* None: this process is the command)."""
    args = build_parser().parse_args(argv)
    if argv is None and args.command == "agent":
        # The process is an agent runner (a pod's, a local sandbox's), with the API key in its
        # environment: hide it before any command runs. Called with *argv*, the caller's
        # process is not ours to change.
        from agentfactory.agent.hiding import hide_from_children

        hide_from_children()
    try:
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result
