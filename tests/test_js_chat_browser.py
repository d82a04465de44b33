"""The example chat page (examples/chat/) in a real headless Chromium, with the JS client.

The page is served by the README's one-line static server (``python -m http.server`` at the
repository root) and talks to a real ``wsa-fast serve``. Two pages join as alice (compact) and
bob (verbose), each sends the other a direct message (a request relayed both ways, answered by
the other page), and alice broadcasts. The test reads what each page shows from its log and
saves screenshots under the test's tmp_path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

# May first install Chromium with apt-get, and builds the JS client with npm.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
JS_CLIENT = ROOT / "clients" / "js"
SERVING = re.compile(r"Serving HTTP on \S+ port (\d+)")
BUILD_TIMEOUT = 600.0
# Playwright's own waits are the barriers; this only bounds a page that never gets there.
WAIT_MS = 30_000


def run_npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: the JS client cannot be built (install Node.js 20+)", pytrace=False)
    done = subprocess.run([npm, *args], cwd=JS_CLIENT, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def js_client_built() -> None:
    """clients/js/dist, built from the sources with the locked dependencies."""
    if not (JS_CLIENT / "node_modules" / ".package-lock.json").exists():
        run_npm("ci", "--no-audit", "--no-fund")
    run_npm("run", "build")


@pytest.fixture(scope="module")
def static_server(js_client_built: None) -> Iterator[str]:
    """The README's static server at the repository root, on a free port: its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(ROOT), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = SERVING.search(line)
        if match is None:
            pytest.fail(f"the static server did not start: {line!r}", pytrace=False)
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        proc.wait(10)


def join(browser, base: str, gateway_url: str, name: str, form: str):
    page = browser.new_page(viewport={"width": 760, "height": 520})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/examples/chat/?{urlencode({'gateway': gateway_url, 'form': form})}")
    page.fill("#name", name)
    page.click("#join")
    page.wait_for_selector("#status[data-state=open]", timeout=WAIT_MS)
    page.errors = errors
    return page


def send(page, to: str, text: str) -> None:
    page.fill("#to", to)
    page.fill("#text", text)
    page.click("#send")


def log_of(page) -> list[dict]:
    return page.eval_on_selector_all("#log li", "items => items.map(li => ({...li.dataset}))")


def test_two_pages_chat_through_the_gateway(browser, start_gateway, static_server, tmp_path):
    gateway = start_gateway()
    alice = join(browser, static_server, gateway.url, "alice", "compact")
    bob = join(browser, static_server, gateway.url, "bob", "verbose")
    try:
        assert alice.text_content("#status") == "Joined as alice (compact)."
        assert bob.text_content("#status") == "Joined as bob (verbose)."
        assert alice.is_hidden("#join-form") and alice.is_visible("#send-form")

        send(alice, "bob", "hi bob")
        bob.wait_for_selector("#log li[data-kind=direct-in][data-text='hi bob']", timeout=WAIT_MS)
        alice.wait_for_selector("#log li[data-kind=direct-out][data-outcome]", timeout=WAIT_MS)
        send(bob, "alice", "hi alice")
        alice.wait_for_selector("#log li[data-kind=direct-in][data-text='hi alice']", timeout=WAIT_MS)
        bob.wait_for_selector("#log li[data-kind=direct-out][data-outcome]", timeout=WAIT_MS)
        send(alice, "", "hello everyone")
        bob.wait_for_selector("#log li[data-kind=broadcast-in]", timeout=WAIT_MS)
        send(bob, "nobody", "anyone there?")
        bob.wait_for_selector("#log li[data-kind=direct-out][data-outcome=failed]", timeout=WAIT_MS)

        alice.screenshot(path=str(tmp_path / "alice.png"))
        bob.screenshot(path=str(tmp_path / "bob.png"))
        alice_log, bob_log = log_of(alice), log_of(bob)
        alice_marks = alice.eval_on_selector_all("#log li .mark", "marks => marks.map(m => m.textContent)")
        bob_marks = bob.eval_on_selector_all("#log li .mark", "marks => marks.map(m => m.textContent)")
    finally:
        alice.close()
        bob.close()

    assert alice_log == [
        {"kind": "direct-out", "from": "alice", "to": "bob", "text": "hi bob", "outcome": "delivered"},
        {"kind": "direct-in", "from": "bob", "to": "alice", "text": "hi alice"},
        {"kind": "broadcast-out", "from": "alice", "to": "", "text": "hello everyone", "outcome": "sent"},
    ]
    assert bob_log == [
        {"kind": "direct-in", "from": "alice", "to": "bob", "text": "hi bob"},
        {"kind": "direct-out", "from": "bob", "to": "alice", "text": "hi alice", "outcome": "delivered"},
        {"kind": "broadcast-in", "from": "alice", "to": "", "text": "hello everyone"},
        {"kind": "direct-out", "from": "bob", "to": "nobody", "text": "anyone there?", "outcome": "failed"},
    ]
    assert alice_marks == ["✓ read by bob", "sent"]
    assert bob_marks == ["✓ read by alice", "✗ NOT_FOUND"]
    assert alice.errors == [] and bob.errors == []
    assert (tmp_path / "alice.png").stat().st_size > 0 and (tmp_path / "bob.png").stat().st_size > 0
