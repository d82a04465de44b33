"""``wsa_fast.Context``: compiled, yet what a user sees is what the Python class offered; and what ``App`` refuses.

A user building one to unit-test a handler calls it with the same arguments, reads the same
attributes and gets the same repr; the gateway fills it in C without calling ``__init__``,
which the end-to-end tests (test@v1/context in tests/test_e2e_protocol.py) cover.
"""

from __future__ import annotations

import pytest

import wsa_fast
from wsa_fast import App, Context


def test_a_user_builds_a_context_to_call_a_handler_directly():
    app = App()

    @app.request("shop@v1/order")
    def order(ctx: Context, params: dict) -> dict:
        return {"by": ctx.client_id, "id": ctx.id, "method": ctx.method, "items": params["items"]}

    ctx = Context(app, "alice", "ab12c", "shop@v1/order", None)
    assert order(ctx, {"items": [1, 2]}) == {"by": "alice", "id": "ab12c", "method": "shop@v1/order", "items": [1, 2]}
    assert (ctx.app, ctx.connection) == (app, None)
    assert repr(ctx) == "Context(client_id='alice', id='ab12c', method='shop@v1/order')"
    assert wsa_fast.Context is wsa_fast.app.Context is Context


def test_a_context_describes_one_message_and_cannot_be_rewritten():
    ctx = Context(App(), "alice", "ab12c", "shop@v1/order", None)
    with pytest.raises(AttributeError):
        ctx.id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ctx.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        Context(App(), 42, "ab12c", "shop@v1/order", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["wsa@v1/ping", "auth@v1/login"])
def test_an_app_cannot_take_over_a_built_in_method(method):
    """The gateway answers these itself (profile section 7): registering one is a mistake said at once."""
    app = App()
    with pytest.raises(ValueError, match=f"{method} is built in"):
        app.request(method)
    with pytest.raises(ValueError, match=f"{method} is built in"):
        app.event(method)
