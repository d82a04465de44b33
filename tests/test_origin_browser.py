"""The Origin check as a browser meets it: Debian's Chromium opens a WebSocket from pages of two
origins, and only the listed one gets through.

The page comes from a small HTTP server on 127.0.0.1, reached as ``http://127.0.0.1:PORT`` and as
``http://localhost:PORT``: two origins to the browser, both on loopback, since Chromium's local
network checks stop a page from elsewhere before the gateway would see it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# May first install Chromium with apt-get.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# The page opens a WebSocket and reports whether it opened and how it closed.
PAGE = """
<script>
window.result = new Promise((resolve) => {
  const ws = new WebSocket(%(url)s, "wsa.v1");
  let opened = false;
  ws.onopen = () => { opened = true; ws.close(1000); };
  ws.onclose = (e) => resolve({opened, code: e.code});
});
</script>
"""


@pytest.fixture
def page_server() -> Iterator[ThreadingHTTPServer]:
    """Serves PAGE for the gateway URL in ``server.gateway_url``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (PAGE % {"url": json.dumps(self.server.gateway_url)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def open_from(browser, origin: str) -> dict:
    page = browser.new_page()
    try:
        page.goto(f"{origin}/")
        return page.evaluate("window.result")
    finally:
        page.close()


def test_a_page_from_an_unlisted_origin_cannot_open_a_websocket(browser, start_gateway, page_server):
    port = page_server.server_address[1]
    allowed, foreign = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
    server = start_gateway("--allowed-origins", allowed)
    page_server.gateway_url = server.url
    assert open_from(browser, allowed) == {"opened": True, "code": 1000}, server.log
    # A browser shows a refused upgrade only as a failed connection (1006); the server says why.
    assert open_from(browser, foreign) == {"opened": False, "code": 1006}
    assert server.wait_for_log(f"refused an upgrade from origin '{foreign}'"), server.log
    assert f"origin '{allowed}'" not in server.log
