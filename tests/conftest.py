"""Fixtures shared by the tests: the git remote of the pipeline tests, and the real control
plane with a namespace per test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from testbed.apiserver import ControlPlane
from testbed.fakes.github_api import FakeGitHub
from testbed.gitutil import git
from testbed.scripts import FILES

from tests.githubs import ALL, REPO

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# No test may depend on the machine's speed: Hypothesis' deadline and its "too slow" health
# check measure time, and fail on a CI machine whose other core is busy.
settings.register_profile(
    "speed-independent", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("speed-independent")


@pytest.fixture
def github(tmp_path: Path, remote: Path) -> Iterator[FakeGitHub]:
    """The fake GitHub serving `remote` as acme/shop, with the App installed on it."""
    with FakeGitHub(root=tmp_path / "github") as fake:
        fake.create_repository(REPO, remote)
        fake.install(7, REPO, **ALL)
        yield fake


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    for name, text in FILES.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real control plane for this pytest worker (see testbed/apiserver.py)."""
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield plane.start()
    finally:
        plane.stop()


@pytest.fixture
def bare_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own, without our CRDs (for installing them itself, as
    the chart does: CRDs are cluster-wide, and one release cannot adopt another's)."""
    plane = ControlPlane(tmp_path / "controlplane")
    try:
        yield plane.start(crds=False)
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A namespace of this test's own on the real server, enforcing "restricted"."""
    return control_plane.namespace()
