"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler, built from their Go modules by tests/controlplane/build.sh.

The API server serves TLS only, authenticates client certificates and service-account tokens
(signed with a key pair made here), authorizes with RBAC and Node, and admits with the plugins
a production cluster runs, PodSecurity and OwnerReferencesPermissionEnforcement among them.
The controller manager brings garbage collection, namespace deletion, service accounts and the
node lifecycle; the scheduler binds pods to the test kubelet's Node. There is no container
runtime: testbed/kubelet.py runs pods' commands as processes.

One control plane serves a whole pytest worker (it takes seconds to start); each test works
in a namespace of its own, labelled to enforce Pod Security "restricted".
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).parent.parent
BUILD = ROOT / "tests" / "controlplane" / "build.sh"
CRDS = ROOT / "crds"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
ADMISSION = [
    "NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity",
    "DefaultTolerationSeconds", "DefaultStorageClass", "ResourceQuota", "Priority",
    "OwnerReferencesPermissionEnforcement", "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook",
]  # fmt: skip
# Every request once, when it completes (a watch or a log stream would log its start too).
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived", "ResponseStarted"],
                "rules": [{"level": "Metadata"}]}  # fmt: skip
READY_WITHIN = 180.0
PROBE_EVERY = 0.2


#: Our CRDs as shipped, read once.
SHIPPED: list[dict[str, Any]] = [yaml.safe_load(p.read_text()) for p in sorted(CRDS.glob("*.yaml"))]


def binaries() -> Path:
    """The directory of the built binaries (builds them first when the pins changed)."""
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tests/controlplane/build.sh failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """In the child, before exec: be sent SIGTERM when the process that started us dies (a
    killed test worker or benchmark must not leave a control plane running)."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- certificates ------------------------------------------------------------------------------


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Authority:
    """A certificate authority that signs the serving and client certificates."""

    directory: Path
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(
        ec.SECP256R1()))  # fmt: skip
    cert: x509.Certificate | None = None

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentfactory-test-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.path = self.directory / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, name: str, *, groups: tuple[str, ...] = (), server: bool = False,
        hosts: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:  # fmt: skip
        """A certificate and key for *name* (a client's user name, CN; *groups* as O), or a
        serving certificate for *hosts*; their paths."""
        assert self.cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([
            *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ])  # fmt: skip
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )  # fmt: skip
        if hosts:
            sans: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    sans.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        slug = name.replace(":", "-")
        cert_path, key_path = self.directory / f"{slug}.crt", self.directory / f"{slug}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem(key))
        key_path.chmod(0o600)
        return cert_path, key_path


# -- the control plane -------------------------------------------------------------------------


class ApiError(Exception):
    """The server refused a request: its code and its Status object."""

    def __init__(self, code: int, body: str) -> None:
        try:
            self.status: dict[str, Any] = json.loads(body)
        except json.JSONDecodeError:
            self.status = {"message": body}
        super().__init__(f"{code}: {self.status.get('message', body)}")
        self.code = code


@dataclass
class Credentials:
    """Who a client is: a client certificate, or a bearer token."""

    cert: Path | None = None
    key: Path | None = None
    token: str | None = None


@dataclass
class ControlPlane:
    root: Path
    bin: Path = field(default_factory=binaries)
    url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pki = self.root / "pki"
        self.pki.mkdir(parents=True, exist_ok=True)
        self.ca = Authority(self.pki)
        cert, key = self.ca.issue("admin", groups=("system:masters",))
        self.admin = Credentials(cert, key)
        self.audit_log = self.root / "audit.log"

    # The processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, *argv: str) -> None:
        with (self.root / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                [str(self.bin / name), *argv], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip

    def _log_tail(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _await(self, name: str, ready: Any) -> None:
        """Probe *ready* until it holds. Between probes, wait on the process itself: its exit
        (the failure) ends the wait at once; a server's readiness has no event of its own."""
        process = self.processes[name]
        end = time.monotonic() + READY_WITHIN
        while time.monotonic() < end:
            with contextlib.suppress(OSError, ApiError):
                if ready():
                    return
            try:
                process.wait(PROBE_EVERY)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"{name} exited:\n{self._log_tail(name)}")
        raise RuntimeError(f"{name} was not ready within {READY_WITHIN} s:\n{self._log_tail(name)}")

    def start(self, *, crds: bool = True) -> ControlPlane:
        """Start the processes and wait for the API server; with *crds*, install ours."""
        etcd_port, peer_port, port = free_port(), free_port(), free_port()
        etcd = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd", "--data-dir", str(self.root / "etcd"), "--name", "test",
            "--listen-client-urls", etcd, "--advertise-client-urls", etcd,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        )  # fmt: skip
        self._await("etcd", lambda: urllib.request.urlopen(f"{etcd}/health", timeout=2))
        serving = self.ca.issue("kube-apiserver", server=True, hosts=(
            "127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "10.0.0.1"))  # fmt: skip
        kubelet_client = self.ca.issue("kube-apiserver-kubelet-client", groups=("kubelet-api",))
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (self.pki / "sa.key").write_bytes(_pem(sa_key))
        public = sa_key.public_key()
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        (self.pki / "sa.pub").write_bytes(public.public_bytes(serialization.Encoding.PEM, spki))
        (self.root / "audit-policy.yaml").write_text(json.dumps(AUDIT_POLICY))
        self.url = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver", "--etcd-servers", etcd, "--etcd-prefix", f"/{uuid.uuid4().hex}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(port), "--tls-cert-file", str(serving[0]),
            "--tls-private-key-file", str(serving[1]), "--client-ca-file", str(self.ca.path),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.pki / "sa.pub"),
            "--service-account-signing-key-file", str(self.pki / "sa.key"),
            "--service-cluster-ip-range", "10.0.0.0/24", "--allow-privileged=false",
            "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", ",".join(ADMISSION),
            "--kubelet-client-certificate", str(kubelet_client[0]),
            "--kubelet-client-key", str(kubelet_client[1]),
            "--kubelet-preferred-address-types", "InternalIP",
            "--endpoint-reconciler-type", "none", "--cert-dir", str(self.pki),
            "--audit-policy-file", str(self.root / "audit-policy.yaml"),
            "--audit-log-path", str(self.audit_log), "--audit-log-mode", "blocking",
            "--audit-log-format", "json",
        )  # fmt: skip
        self._await("kube-apiserver", lambda: self.request("GET", "/readyz") == "ok")
        for name, user in (("kube-controller-manager", "system:kube-controller-manager"),
                           ("kube-scheduler", "system:kube-scheduler")):  # fmt: skip
            config = self.kubeconfig(self.root / f"{name}.kubeconfig", Credentials(
                *self.ca.issue(user)))  # fmt: skip
            flags = ["--kubeconfig", str(config), "--leader-elect=false",
                     "--bind-address", "127.0.0.1", "--secure-port", str(free_port())]  # fmt: skip
            if name == "kube-controller-manager":
                flags += ["--use-service-account-credentials",
                          "--service-account-private-key-file", str(self.pki / "sa.key"),
                          "--root-ca-file", str(self.ca.path),
                          "--controllers", "*,-bootstrapsigner,-tokencleaner",
                          "--node-monitor-grace-period", "60s"]  # fmt: skip
            self._spawn(name, *flags)
        if crds:
            self.install_crds()
        return self

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # Clients ---------------------------------------------------------------------------------

    def ssl_context(self, who: Credentials | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.path))
        who = who or self.admin
        if who.cert is not None and who.key is not None:
            context.load_cert_chain(str(who.cert), str(who.key))
        return context

    def request(
        self, method: str, path: str, body: Any = None, *, who: Credentials | None = None,
        content_type: str = "application/json",
    ) -> Any:  # fmt: skip
        """A blocking API call (for fixtures): the decoded answer; raises ApiError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if who is not None and who.token:
            request.add_header("Authorization", f"Bearer {who.token}")
        try:
            with urllib.request.urlopen(
                request, context=self.ssl_context(who), timeout=60
            ) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def kubeconfig(
        self, path: Path, who: Credentials | None = None, namespace: str = "default"
    ) -> Path:
        """A kubeconfig at *path* for this server, as *who* (the admin by default)."""
        who = who or self.admin
        user: dict[str, str] = {}
        if who.cert is not None and who.key is not None:
            user = {"client-certificate": str(who.cert), "client-key": str(who.key)}
        if who.token:
            user["token"] = who.token
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca.path)}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {
                "cluster": "test", "user": "test", "namespace": namespace}}],
        }))  # fmt: skip
        path.chmod(0o600)
        return path

    def install_crds(self) -> None:
        """Our CRDs, as shipped, and wait until the server serves them."""
        for crd in SHIPPED:
            self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        for crd in SHIPPED:
            self.await_established(crd["metadata"]["name"])

    def await_established(self, name: str) -> None:
        """Wait until the server serves the CRD *name*."""
        self._await("kube-apiserver", lambda: self._established(name))

    def _established(self, name: str) -> bool:
        crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {
            c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []
        }
        return conditions.get("Established") == "True"

    def namespace(self, prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        """A new namespace enforcing Pod Security "restricted"; its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**RESTRICTED, **(labels or {})}}})  # fmt: skip
        return name

    def audit(self) -> list[dict[str, Any]]:
        """Every request the server has answered, as its audit log records it."""
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]


def tool(name: str) -> str:
    """The path of a built client binary (kubectl, helm)."""
    path = binaries() / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run bash tests/controlplane/build.sh")
    return str(path)


def scrubbed_env(**extra: str) -> dict[str, str]:
    """The environment for kubectl and helm: no user kubeconfig or Helm state leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "HELM_"))}
    return {**env, **extra}


def run_tool(name: str, *argv: str, stdin: str | None = None, config: Path | None = None) -> str:
    """Run kubectl or helm (with the kubeconfig *config*); its output, or RuntimeError with
    what it said."""
    extra = {"KUBECONFIG": str(config)} if config is not None else {}
    done = subprocess.run(
        [tool(name), *argv], input=stdin, capture_output=True, text=True, check=False,
        env=scrubbed_env(**extra), timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(argv)}: {done.stderr.strip() or done.stdout}")
    return done.stdout
