"""Module crossings on one task's path through the operator: from the worker's first pass
over a new AgentTask to its first stage pod (DependenciesReady and Admitted decided, two
status PATCHes, the plan pod launched), counted with a profiler hook on the real control
plane (`testbed/apiserver.py`).

    python -m benchmarks.crossings [REPOSITORY]

With REPOSITORY (a checkout of another commit of this project), its code is measured
instead, so a change can be compared with the code before it. Figures: calls from one
`agentfactory` module into another (crossings), the distinct modules on the path, and how
often the worker module calls into another (a coroutine resumed after an await is not a
call).
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "agentfactory"


def _module(frame: Any) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith(PACKAGE + ".") else None


async def _path(root: Path) -> dict[str, Any]:
    sys.path[:0] = [str(root / "operator"), str(root)]
    fixtures = "testbed" if (root / "testbed").is_dir() else "tests"
    apiserver = importlib.import_module(f"{fixtures}.apiserver")
    scripts = importlib.import_module(f"{fixtures}.scripts")
    gitutil = importlib.import_module(f"{fixtures}.gitutil")
    worker_module = importlib.import_module(f"{PACKAGE}.controller.worker")
    try:
        view_module = importlib.import_module(f"{PACKAGE}.kube.view")
    except ImportError:
        view_module = importlib.import_module(f"{PACKAGE}.controller.view")
    from agentfactory.kube.auth import connect  # from *root*
    from agentfactory.kube.client import Kube, path_of
    from agentfactory.manifests.agents import agent_service_account

    api = "agentfactory.dev/v1alpha1"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        seed, remote = base / "seed", base / "remote.git"
        for name, text in scripts.FILES.items():
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            (seed / name).write_text(text)
        gitutil.git(seed, "init", "-q", "-b", "main")
        gitutil.git(seed, "add", "-A")
        gitutil.git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seed")
        gitutil.git(base, "clone", "-q", "--bare", str(seed), str(remote))
        plane = apiserver.ControlPlane(base / "plane").start()
        try:
            ns = plane.namespace("shop")
            account = agent_service_account("shop", ns, "uid")
            account["metadata"].pop("ownerReferences")
            plane.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", account)
            config = plane.kubeconfig(base / "admin.kubeconfig", namespace=ns)
            async with Kube(connection=connect(str(config))) as kube:
                await kube.create(path_of(api, "factoryspecs", ns), scripts.factory_doc(remote))
                task = scripts.task_doc("fix-cart", "cart_total counts.", ["shop/cart.py"])
                await kube.create(path_of(api, "agenttasks", ns), task)
                worker = worker_module.Worker(ns, kube, view_module.View(), base / "worker")
                await worker.refresh()
                calls: collections.Counter[tuple[str, str]] = collections.Counter()

                live: set[int] = set()  # coroutine frames entered (a resumption is no call)

                def hook(frame: Any, event: str, _: Any) -> None:
                    if frame.f_code.co_flags & inspect.CO_COROUTINE:
                        if event == "return" and frame.f_back is None:
                            live.discard(id(frame))
                        if id(frame) in live:
                            return
                        live.add(id(frame))
                    if event != "call" or frame.f_back is None:
                        return
                    callee, caller = _module(frame), _module(frame.f_back)
                    if callee and caller and callee != caller:
                        calls[caller, callee] += 1

                sys.setprofile(hook)
                try:
                    while await worker.step():
                        pass
                finally:
                    sys.setprofile(None)
                pods = await kube.list(path_of("v1", "pods", ns))
        finally:
            plane.stop()
    worker = f"{PACKAGE}.controller.worker"
    top = ", ".join(
        f"{a.split('.', 1)[1]}->{b.split('.', 1)[1]} {n}" for (a, b), n in calls.most_common(12)
    )
    return {
        "pods": [p["metadata"]["name"] for p in pods],
        "crossings": sum(calls.values()),
        "boundaries (distinct caller -> callee pairs)": len(calls),
        "modules": len({m for pair in calls for m in pair}),
        "into the worker": sum(n for (_, callee), n in calls.items() if callee == worker),
        "out of the worker": sum(n for (caller, _), n in calls.items() if caller == worker),
        "most crossed": top,
    }


def main() -> None:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).parents[1]
    figures = asyncio.run(_path(root))
    print(f"code measured: {root}")
    for key, value in figures.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
