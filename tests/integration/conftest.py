"""Fixtures for the integration suite: backends, nginx and the gatehouse process under test.

Every fixture cleans up after itself with bounded waits. When a test fails, the tail of each
gatehouse log it produced is attached to the report.
"""

import pytest

import harness
from backend import Backend


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for index, gatehouse in enumerate(getattr(item, "_gatehouses", [])):
        report.sections.append(
            (f"gatehouse #{index} log tail ({gatehouse.log_path})", gatehouse.log_tail(80)))


@pytest.fixture
def backend_factory():
    """make(name, port=0) starts a Backend; all are stopped after the test."""
    started = []

    def make(name, port=0):
        backend = Backend(name, port).start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()


@pytest.fixture
def backend(backend_factory):
    return backend_factory("alpha")


@pytest.fixture
def start_gatehouse(tmp_path, request):
    """start(routes, https=False, **overrides) runs gatehouse with the suite's base config plus
    overrides.

    Overrides merge into the base section by section, e.g. timeouts={"idle": "1s"}. With
    https=True the config also gets a TLS listener on a free port and, unless the overrides name
    one, a file store in the process's own workdir (<workdir>/store). The process is ready
    (admin /readyz answered 200) when start returns. After the test it gets SIGTERM, then
    SIGKILL if it has not exited within a bounded wait.
    """
    binary = harness.require_gatehouse_binary()
    started = []
    request.node._gatehouses = started

    def start(routes, https=False, **overrides):
        workdir = tmp_path / f"gatehouse{len(started)}"
        workdir.mkdir()
        http_port = harness.free_port()
        admin_port = harness.free_port()
        while admin_port == http_port:
            admin_port = harness.free_port()
        config = harness.base_config(http_port, admin_port, routes)
        if https:
            https_port = harness.free_port()
            while https_port in (http_port, admin_port):
                https_port = harness.free_port()
            if "store" in overrides:
                # A store given by the test replaces the default one instead of merging into
                # it, so that `etcd:` does not end up beside the default `file:`.
                config["store"] = overrides.pop("store")
            config = harness.with_https(config, https_port, workdir / "store")
        config = harness.merge(config, overrides)
        gatehouse = harness.Gatehouse(binary, workdir, config)
        started.append(gatehouse)
        return gatehouse.start()

    yield start

    crashed = []
    for gatehouse in started:
        code = gatehouse.proc.poll() if gatehouse.proc else None
        if code is not None and code < 0 and not gatehouse.stopped_by_test:
            crashed.append(f"gatehouse died from signal {-code} during the test\n{gatehouse.log_tail()}")
        gatehouse.stop()
    assert not crashed, "\n".join(crashed)


@pytest.fixture
def gatehouse(start_gatehouse, backend):
    """gatehouse serving host app.test, every path, from the `backend` fixture."""
    return start_gatehouse([harness.route("app.test", backend)])


@pytest.fixture
def nginx_factory(tmp_path):
    """make(name, server_body) starts an nginx whose server block holds `server_body`."""
    started = []

    def make(name, server_body):
        nginx = harness.Nginx(tmp_path / f"nginx-{name}", server_body)
        started.append(nginx)
        return nginx.start()

    yield make
    for nginx in started:
        nginx.stop()
