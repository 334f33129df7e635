"""Pure builders of Kubernetes objects (dicts in, dicts out): CRDs now; pods, secrets,
config maps and network policies as the operator grows. No I/O, no clients."""

from __future__ import annotations
