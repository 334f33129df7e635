"""Credentials the operator reads for a namespace: Secrets that factories name (only those
that opt in to the factory), and each factory's forge, built from its repository and its
credentials and made again only when either changes.

A Secret read stays good for SECRET_SECONDS: the forge is asked for on every launch,
collection, CI check and PR update, and a rotated (or newly labelled) Secret only needs to be
picked up soon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory.core.secret_optin import refusal
from agentfactory.forge.registry import FORGES, ForgeRegistry
from agentfactory.kube.client import Kube, SecretRefusedError

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.forges import Forge

#: How long a credentials Secret read stays good (rotation is picked up within this).
SECRET_SECONDS = 30


@dataclass
class Credentials:
    """Secrets and forges of one namespace."""

    namespace: str
    kube: Kube
    workdir: Path
    registry: ForgeRegistry = field(default_factory=lambda: FORGES)
    _secrets: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = field(
        default_factory=dict
    )
    """Secrets by (name, factory): (when read, decoded data; None: not the factory's to use)."""
    _forges: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], Forge]] = field(
        default_factory=dict
    )

    async def secret(self, name: str, factory: str, field: str) -> dict[str, str]:
        """The data of the Secret *name* that *factory*'s *field* names. SecretRefusedError,
        saying what to do, when it does not let the factory use it."""
        read = self._secrets.get((name, factory))
        if read is None or time.monotonic() - read[0] >= SECRET_SECONDS:
            try:
                data = await self.kube.secret_data(self.namespace, name, factory) or {}
            except SecretRefusedError:
                data = None
            read = self._secrets[name, factory] = (time.monotonic(), data)
        if read[1] is None:
            raise SecretRefusedError(refusal(name, factory, field))
        return read[1]

    async def forge(self, name: str, spec: FactorySpecSpec) -> Forge:
        """The factory's forge, made again only when its repository or credentials change."""
        secret_name = spec.repository.credentials_secret
        where = "spec.repository.credentials"
        secret = await self.secret(secret_name, name, where) if secret_name else {}
        key = (spec.repository.model_dump_json(), tuple(sorted(secret.items())))
        if name not in self._forges or self._forges[name][0] != key:
            built = self.registry.build(spec.repository, self.workdir / self.namespace / name,
                                        secret)  # fmt: skip
            if name in self._forges:
                self._forges[name][1].close()
            self._forges[name] = (key, built)
        return self._forges[name][1]

    def close(self) -> None:
        """Close every forge's connections."""
        for _, forge in self._forges.values():
            forge.close()
        self._forges.clear()
