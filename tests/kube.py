"""kmock's KubernetesEmulator prepared for kopf, and what we had to add to it.

What kmock 0.8 lacked, and what this module adds (see DESIGN.md section 7):
- kopf waits for a "backbone" of core resources before it starts any watch: without
  CustomResourceDefinitions, Namespaces and Events declared in the emulator's discovery, kopf
  starts, logs in, and silently never watches anything. They are declared here.
- Resources must be declared with their verbs (`list`, `watch`, ...): otherwise kopf logs
  "Non-watchable resources will not be served" and skips them.
- Our two CRDs are declared from the generated files in `crds/`, so the emulator serves
  exactly the kinds, short names and categories we ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import kmock

CRDS = Path(__file__).parent.parent / "crds"
VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
BACKBONE = {
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "v1/namespaces": ("Namespace", False),
    "v1/events": ("Event", True),
    "v1/pods": ("Pod", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/secrets": ("Secret", True),
}


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """Declare the backbone and our CRDs in *emulator*'s discovery."""
    for key, (kind, namespaced) in BACKBONE.items():
        info = emulator.resources[key]
        info.kind, info.namespaced, info.verbs = kind, namespaced, VERBS
    for path in sorted(CRDS.glob("*.yaml")):
        crd: dict[str, Any] = yaml.safe_load(path.read_text())
        names, version = crd["spec"]["names"], crd["spec"]["versions"][0]["name"]
        info = emulator.resources[f"{crd['spec']['group']}/{version}/{names['plural']}"]
        info.kind, info.namespaced, info.verbs = names["kind"], True, VERBS
        info.shortnames = set(names["shortNames"])
        info.categories = set(names["categories"])
        info.subresources = {"status"}
