"""Where the API server is and how the operator proves who it is, found as every Kubernetes
client finds it (the `kubernetes` package's own loaders): an explicit kubeconfig or
`$KUBECONFIG` (its current context or `--context`: client certificates, tokens, exec
credential plugins), else the pod's service account (token and CA), else `~/.kube/config`.
TLS is always verified: a kubeconfig that turns verification off is refused."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes.client import Configuration
from kubernetes.config import ConfigException
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION, load_kube_config

SERVICE_ACCOUNT = Path(SERVICE_TOKEN_FILENAME).parent


class AuthError(Exception):
    """No usable way to reach the API server; the message says what to pass or fix."""


@dataclass
class Connection:
    """An API server and the credentials to use with it."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    namespace: str | None = None
    source: str = ""
    """Where it came from, for the start-up log: "service account", a kubeconfig path."""
    _config: Configuration | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        """The Authorization header's value, refreshed as its source requires (the service
        account token file is re-read every minute; exec plugins run again on expiry)."""
        if self._config is None:
            return None
        value = self._config.get_api_key_with_prefix("BearerToken", alias="authorization")
        if value and value.split(" ", 1)[0].lower() == "bearer":
            return "Bearer " + value.split(" ", 1)[1].strip()
        return value or None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context: the cluster's CA (or the system's), and the client certificate."""
        if not self.server.startswith("https://"):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _in_cluster() -> Connection:
    config = Configuration()
    loader = InClusterConfigLoader(SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME)  # type: ignore[no-untyped-call]
    loader.load_and_set(config)  # type: ignore[no-untyped-call]
    namespace_file = SERVICE_ACCOUNT / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else None
    return Connection(server=config.host, ca_file=config.ssl_ca_cert, namespace=namespace,
                      source="the pod's service account", _config=config)  # fmt: skip


def _from_kubeconfig(path: str, context: str | None) -> Connection:
    config = Configuration()
    where = f"the kubeconfig {path}" + (f" (context {context})" if context else "")
    try:
        load_kube_config(path, context, client_configuration=config, persist_config=False)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise AuthError(f"{where} cannot be used: {exc}") from exc
    if not config.verify_ssl:
        raise AuthError(
            f"{where} turns TLS verification off (insecure-skip-tls-verify): the operator holds"
            " credentials and always verifies the server; set certificate-authority-data"
            " (or certificate-authority) in the cluster entry instead"
        )
    if not config.host.startswith("https://"):
        raise AuthError(
            f"{where} names a plain-HTTP server ({config.host}): the operator talks TLS only"
        )
    return Connection(server=config.host, ca_file=config.ssl_ca_cert, cert_file=config.cert_file,
                      key_file=config.key_file, source=where, _config=config)  # fmt: skip


def connect(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """The connection a Kubernetes client would use (see the module's docstring)."""
    explicit = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    if explicit:
        return _from_kubeconfig(explicit, context)
    if SERVICE_HOST_ENV_NAME in os.environ and not context:
        try:
            return _in_cluster()
        except ConfigException as exc:
            raise AuthError(f"in a pod, but its service account cannot be used: {exc}") from exc
    default = os.path.expanduser(KUBE_CONFIG_DEFAULT_LOCATION)
    if os.path.exists(default):
        return _from_kubeconfig(default, context)
    raise AuthError(
        "no API server to talk to: not in a pod (KUBERNETES_SERVICE_HOST is not set) and no"
        f" kubeconfig at {default}; pass --kubeconfig FILE (and --context NAME), or set KUBECONFIG"
    )
