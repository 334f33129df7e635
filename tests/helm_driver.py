"""Helm's engine (helm-sdkpy), driven by the chart tests from another interpreter.

helm-sdkpy needs Python 3.12 and the project runs on 3.11, so the tests run this script with
the interpreter of `.venv-helm` (see README). It reads one request as JSON on stdin and
writes one answer as JSON on stdout: {"ok": true, "result": ...} or {"ok": false, "error":
"..."}. It imports nothing outside the standard library and helm-sdkpy.

- {"action": "lint", "chart": path}: Helm's lint of the chart as it is on disk.
- {"action": "install", "chart": path, "release": name, "namespace": ns, "kubeconfig": path,
  "values": {...}}: `helm install` without waiting for readiness.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import helm_sdkpy as helm

# Helm keeps its release records in Secrets encoded as protobuf, which the API emulator cannot
# read; in memory instead, everything else goes to the API server as JSON. Helm's Go runtime
# reads the environment the process started with, so the caller must set it.
MEMORY = "HELM_DRIVER=memory"


async def answer(request: dict) -> object:
    if request["action"] == "lint":
        return await helm.Lint(helm.Configuration()).run(request["chart"])
    if request["action"] == "install":
        config = helm.Configuration(
            namespace=request["namespace"], kubeconfig=request["kubeconfig"]
        )
        release = await helm.Install(config).run(
            request["release"],
            request["chart"],
            values=request.get("values") or {},
            wait=False,
            timeout=60,
        )
        return {
            "notes": release.get("info", {}).get("notes", ""),
            "status": release.get("info", {}).get("status", ""),
        }
    raise ValueError(f"unknown action {request['action']!r}")


def main() -> None:
    if os.environ.get("HELM_DRIVER") != "memory":
        sys.exit(f"run with {MEMORY} in the environment")
    request = json.load(sys.stdin)
    try:
        out = {"ok": True, "result": asyncio.run(answer(request))}
    except Exception as exc:  # every failure goes back to the test as text
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
