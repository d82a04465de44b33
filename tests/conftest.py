"""Shared fixtures: real gateway processes (``wsa-fast serve``, see gateway_process.py) on free ports.

``start_gateway(*args, app=None, env=None)`` starts one with extra CLI flags and stops it
when the test ends; ``gateway`` is one default gateway shared by a test module. Either
fails the test when the server wrote a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from browser import browser  # noqa: F401  (the headless Chromium fixture, see browser.py)
from gateway_process import GatewayProcess

StartGateway = Callable[..., GatewayProcess]


def _launcher(started: list[GatewayProcess]) -> StartGateway:
    def start(*args: str, app: str | None = None, env: dict[str, str] | None = None) -> GatewayProcess:
        argv = list(args)
        if app is not None:
            argv += ["--app", app]
        gateway = GatewayProcess(*argv, env=env)
        started.append(gateway)
        return gateway

    return start


def _stop_all(started: list[GatewayProcess]) -> None:
    failures = []
    for gateway in started:
        try:
            gateway.stop()
        except pytest.fail.Exception as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Factory: ``start_gateway("--request-timeout", "0.5", app="tests.apps.echo_app:app")``."""
    started: list[GatewayProcess] = []
    yield _launcher(started)
    _stop_all(started)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """A gateway with default settings, shared by the tests of one module."""
    started: list[GatewayProcess] = []
    _launcher(started)()
    yield started[0]
    _stop_all(started)
