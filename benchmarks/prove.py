"""What break/fix adds to CI, on the bundled example: for each of its tasks' patches (as the
demo's replays make them), the factory's checks on the head against the proof (the patch's
tests on the base and on the head, and the weakening comparison), timed in the same run.

    python -m benchmarks.prove

The figure is the proof's time as a ratio to the checks' own time on the same head.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentfactory.agent.prove import prove
from agentfactory.core.factory import DEFAULT_TEST_PATHS

ROOT = Path(__file__).resolve().parent.parent
CHECK = [sys.executable, "-m", "unittest", "discover", "-q"]


def main() -> None:
    out = sys.stdout.write
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        subprocess.run([sys.executable, "-m", "agentfactory", "local", "--state", str(state),
                        "--replay", str(ROOT / "examples")], check=False,
                       capture_output=True, cwd=tmp)  # fmt: skip
        remote = state / "remotes" / "webshop.git"
        log = subprocess.run(["git", "-C", str(remote), "log", "--format=%H %s", "main"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        out("| patch | tests proved | checks (s) | proof (s) | ratio |\n")
        out("| --- | --- | --- | --- | --- |\n")
        for line in log.splitlines():
            sha, subject = line.split(" ", 1)
            parents = subprocess.run(["git", "-C", str(remote), "rev-list", "--parents", "-n1",
                                      sha], capture_output=True, text=True,
                                     check=True).stdout.split()  # fmt: skip
            if len(parents) < 2:
                continue  # the first commit: nothing before it to prove against
            # A squash merge is the patch on its base; a merge commit's second parent is.
            head = parents[2] if len(parents) == 3 else sha
            work = Path(tmp) / sha[:12]
            subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
            subprocess.run(["git", "-C", str(work), "checkout", "-q", "--detach", head], check=True)
            began = time.perf_counter()
            subprocess.run(CHECK, cwd=work, capture_output=True, check=False)
            checks = time.perf_counter() - began
            began = time.perf_counter()
            proof = prove(work, list(DEFAULT_TEST_PATHS))
            proved = time.perf_counter() - began
            out(f"| {subject[:50]} | {len(proof.tests)} ({proof.verdict}) | {checks:.2f} |"
                f" {proved:.2f} | {proved / checks:.1f}x |\n")  # fmt: skip


if __name__ == "__main__":
    main()
