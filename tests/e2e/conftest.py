# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures for the end-to-end tests: the demo models (built once per binary by
`aimedres demo init`), and servers started on private copies of them. Every server is
stopped with SIGTERM at teardown and must exit 0."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aimedres_harness as h  # noqa: E402


@pytest.fixture(scope="session")
def aimedres_bin():
    """Path of the aimedres binary under test (AIMEDRES_BIN)."""
    return h.require_binary()


@pytest.fixture(scope="session")
def demo_dir(aimedres_bin):
    """Read-only demo directory (models/, aimedres.db, data/) made by `aimedres demo init`.
    Copy it before changing anything (see demo_copy)."""
    return h.prepare_demo()


@pytest.fixture
def demo_copy(demo_dir, tmp_path):
    """A private, writable copy of the demo directory."""
    return h.copy_demo(demo_dir, str(tmp_path / "demo"))


def _stop_all(servers):
    problems = []
    for srv in servers:
        rc, killed = srv.stop()
        if killed:
            problems.append("server on port %d ignored SIGTERM for %.0f s and was killed\n%s"
                            % (srv.port, h.STOP_TIMEOUT_S, srv.log_tail()))
        elif rc != 0:
            problems.append("server on port %d exited %s after SIGTERM (expected 0)\n%s"
                            % (srv.port, rc, srv.log_tail()))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def make_server(demo_dir, tmp_path):
    """Factory: make_server(extra_env=None, args=None) -> started Server on a fresh demo copy.
    All servers it started are stopped (SIGTERM, exit 0 required) at teardown."""
    servers = []

    def factory(extra_env=None, args=None):
        srv = h.start_server(demo_dir, str(tmp_path / ("srv%d" % len(servers))), extra_env, args)
        servers.append(srv)
        return srv

    yield factory
    _stop_all([s for s in servers if s.returncode is None])


@pytest.fixture
def server(make_server):
    """A server with default settings on its own demo copy (function scope)."""
    return make_server()


@pytest.fixture(scope="module")
def module_server(demo_dir, tmp_path_factory):
    """A server with default settings shared by one test module (read-only tests)."""
    srv = h.start_server(demo_dir, str(tmp_path_factory.mktemp("module-server")))
    yield srv
    if srv.returncode is None:
        _stop_all([srv])


@pytest.fixture(scope="session")
def demo_manifests(demo_dir):
    """{model name: manifest dict of version 1.0.0} for the demo models."""
    return {n: h.read_manifest(os.path.join(demo_dir, "models"), n) for n in h.DEMO_MODELS}
