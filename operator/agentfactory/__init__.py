"""agentfactory: a Kubernetes operator that runs an AI software factory.

The package is layered (enforced by import-linter, see pyproject.toml):
``core`` holds the pure contract (resource models, pipeline state machine, policies,
scheduler); ``manifests`` builds Kubernetes objects from it; ``validation`` and ``cli`` are
the thin edges that read files and talk to people.
"""

from __future__ import annotations

__version__ = "0.1.0"

GROUP = "agentfactory.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
