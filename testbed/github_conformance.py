"""Conformance figures of recorded GitHub exchanges (`AGENTFACTORY_GITHUB_EXCHANGES=FILE`
while the GitHub tests run): how many requests and answers GitHub's description allows.

    python -m testbed.github_conformance FILE
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from testbed.github_openapi import description


def main(path: str) -> None:
    described = description()
    requests = answers = valid_requests = valid_answers = 0
    operations: set[str] = set()
    why: Counter[str] = Counter()
    for line in Path(path).read_text().splitlines():
        x = json.loads(line)
        op, problems = described.request(x["method"], x["path"], x["query"], x["body"])
        requests += 1
        valid_requests += not problems
        why.update(problems[:1])
        if op is None:
            continue
        operations.add(f"{op.method} {op.template}")
        if x["injected"] or x["answer"] in (None, "", {}, []):
            continue
        answers += 1
        wrong = described.response(op, x["status"], x["answer"])
        valid_answers += not wrong
        why.update(f"{x['status']} {op.template}: {w}" for w in wrong[:1])
    out = [
        f"{requests} requests over {len(operations)} operations: {valid_requests} valid"
        f" ({valid_requests / max(requests, 1):.0%})",
        f"{answers} non-empty answers: {valid_answers} valid"
        f" ({valid_answers / max(answers, 1):.0%})",
        *(f"{count:5}  {problem[:160]}" for problem, count in why.most_common(25)),
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
