"""What ComfyUI's ``tests/conftest.py`` gives its execution tests, for our server, plus the server launcher.

- ``comfy_execution`` and friends come from our shims (``engine.comfy.shims.install_modules``), so the test
  files import ``GraphBuilder`` as they do in ComfyUI;
- ``tests.execution`` is this package (``test_async_nodes`` imports ``tests.execution.test_execution``);
- ``args_pytest``: loopback, a free port, a temporary output folder;
- ``avatargraph_server``: starts ``main.py`` with a temporary ``--data-dir``, the vendored ``testing-pack``
  enabled and the given ComfyUI flags, waits until it answers, and stops it by its PID;
- ``skip_timing_checks`` (ComfyUI's ``--skip-timing-checks``): true with ``COMFY_SKIP_TIMING_CHECKS=1``, or while the
  machine is saturated (1-minute load average above its CPU count: the timings would measure other processes),
  decided per test;
- ``KNOWN_FAILURES``: upstream cases we do not pass, each with its reason, marked ``xfail(strict=True)`` so
  a fix shows up as an unexpected pass.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.comfy.shims import install_modules

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
install_modules()
sys.modules.setdefault("tests.execution", sys.modules[__package__])

# test id (without the server parameter) -> why it fails on our server. Kept in step with the README.
KNOWN_FAILURES: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "execution: ComfyUI's execution tests (vendored, run against our server)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        name = item.name.split("[", 1)[0] + _params_without_server(item.name)
        reason = KNOWN_FAILURES.get(name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _params_without_server(name: str) -> str:
    """``test_x[_server1-5-True]`` -> ``[5-True]``: the test's own parameters, without the server's."""
    if "[" not in name:
        return ""
    own = [p for p in name[name.index("[") + 1:-1].split("-") if not p.startswith("_server")]
    return f"[{'-'.join(own)}]" if own else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def args_pytest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {"output_dir": str(tmp_path_factory.mktemp("comfy_output")), "listen": "127.0.0.1",
            "port": _free_port()}


@pytest.fixture
def skip_timing_checks() -> bool:
    if os.environ.get("COMFY_SKIP_TIMING_CHECKS") == "1":
        return True
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        print(f"timing checks skipped: load average {load:.1f} on {cpus} CPUs")  # noqa: T201 (test output)
        return True
    return False


@pytest.fixture(scope="session")
def avatargraph_server(tmp_path_factory: pytest.TempPathFactory):
    """``with avatargraph_server(args_pytest, extra_args): ...`` runs our server for ComfyUI's client."""

    @contextlib.contextmanager
    def run(args: dict[str, object], extra_args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
        data_dir = tmp_path_factory.mktemp("comfy_data")
        log_path = data_dir / "server.log"
        command = [sys.executable, str(ROOT / "main.py"), "--listen", str(args["listen"]), "--port",
                   str(args["port"]), "--data-dir", str(data_dir), "--output-dir", str(args["output_dir"]),
                   "--custom-nodes-dir", str(HERE / "testing_nodes"), "--enable-pack", "testing-pack",
                   *[str(a) for a in extra_args]]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            _wait_until_up(process, args, log_path)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    return run


def _wait_until_up(process: subprocess.Popen[bytes], args: dict[str, object], log_path: Path) -> None:
    url = f"http://{args['listen']}:{args['port']}/system_stats"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer within 90 s:\n{log_path.read_text()[-3000:]}")
