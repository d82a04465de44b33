"""The browser fixture itself: Debian's Chromium talks WSA to a real gateway."""

from __future__ import annotations

import json

import pytest

# May first install Chromium with apt-get.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# The page logs in, pings the server, and reports the response and how the socket closed.
PAGE = """
<script>
window.result = new Promise((resolve) => {
  const ws = new WebSocket(%(url)s, "wsa.v1");
  const log = [];
  ws.onopen = () => ws.send(JSON.stringify({from: "page", to: "server", type: "request",
      id: "aaaa1", payload: {method: "auth@v1/login"}}));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    log.push(m);
    if (m.id === "aaaa1") ws.send(JSON.stringify({from: "page", to: "server", type: "request",
        id: "aaaa2", payload: {method: "wsa@v1/ping"}}));
    else if (m.id === "aaaa2") ws.close(1000);
  };
  ws.onclose = (e) => resolve({log, protocol: ws.protocol, code: e.code, wasClean: e.wasClean});
});
</script>
"""


def test_chromium_logs_in_and_pings(browser, gateway, tmp_path):
    page = browser.new_page()
    try:
        page.set_content(PAGE % {"url": json.dumps(gateway.url)})
        outcome = page.evaluate("window.result")
        page.screenshot(path=str(tmp_path / "page.png"))
    finally:
        page.close()
    assert outcome["protocol"] == "wsa.v1"
    login, ping = outcome["log"]
    assert login["payload"] == {"result": "success", "receipt": "page"}
    assert ping["id"] == "aaaa2" and ping["payload"] == {"result": "success"}
    assert outcome["code"] == 1000 and outcome["wasClean"] is True
