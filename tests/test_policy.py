"""The declarative access policy ([policy] in the TOML config), end to end.

Real ``wsa-fast serve`` processes (one worker, and ``--workers 2`` with the sender and the
target placed on different workers, so a relay is refused on the sender's side before it
crosses NATS) and the ``websockets`` library. Each kind of message (server method, relay
request, relay event, broadcast) is allowed and refused, by client id and by role, with
roles from a JWT claim and from the token file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from gateway_process import GatewayProcess
from test_cluster import APP, visible, where
from wsa_ws import Clients, Peer, aio, expect_fail, expect_response, settled, uid

SECRET = "policy-test-secret-of-32-bytes!!"

POLICY = """
[[policy.allow]]
who = ["*"]
call = ["cluster@v1/where"]
message = ["chat@v1/*"]
to = ["support-*"]

[[policy.allow]]
who = ["role:agent", "boss"]
call = ["cluster@v1/*"]
message = ["*"]

[[policy.allow]]
who = ["role:announcer"]
broadcast = ["news@v1/*"]
"""


def token(sub: str, *roles: str) -> str:
    claims = {"sub": sub, "exp": int(time.time()) + 600}
    if roles:
        claims["roles"] = list(roles)
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "wsa.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module", params=[1, 2], ids=["one worker", "two workers"])
def server(request: pytest.FixtureRequest, config: Path) -> Iterator[GatewayProcess]:
    env = {"WSA_JWT_SECRET": SECRET}
    with GatewayProcess(
        "--app", APP, "--config", config, "--auth", "jwt", "--workers", str(request.param), env=env
    ) as gateway:
        gateway.workers = request.param
        yield gateway


class Placed:
    """Peers bound at the upgrade by a JWT (``?token=``), each placed on a chosen worker."""

    def __init__(self, server: GatewayProcess, clients: Clients) -> None:
        self.clients = clients
        self.workers = server.workers
        self.pids: list[int] = []  # worker processes in the order first seen

    async def open(self, sub: str, *roles: str, worker: int = 0) -> Peer:
        """A peer bound to ``sub`` with ``roles`` on the ``worker``-th worker (the kernel picks; we retry)."""
        for _ in range(60):
            peer = await self.clients.open("verbose", query={"token": token(sub, *roles)})
            peer.cid = sub
            pid = await where(peer)
            if pid not in self.pids and len(self.pids) < self.workers:
                self.pids.append(pid)
            if self.pids.index(pid) == min(worker, self.workers - 1):
                return peer
            await peer.close()
        raise AssertionError(f"no connection landed on worker {worker}")


async def refused(sender: Peer, send, to: str, method: str) -> None:
    msg_id = await send(to, method)
    expect_fail(await sender.recv(), "PERMISSION_DENIED", id=msg_id, to=sender.cid)


@aio
async def test_server_methods_by_id_and_by_role(server: GatewayProcess) -> None:
    async with Clients(server) as clients:
        placed = Placed(server, clients)
        user = await placed.open(uid("user"))
        agent = await placed.open(uid("agent"), "agent", worker=1)
        boss = await placed.open("boss")
        reply = await user.call("server", "cluster@v1/where")
        assert reply["payload"]["result"] == "success", reply
        tell = {"target": uid("nobody"), "method": "x@v1/y"}
        msg_id = await user.request("server", "cluster@v1/tell", tell)
        expect_fail(await user.recv(), "PERMISSION_DENIED", id=msg_id, to=user.cid)
        await refused(user, user.event, "server", "cluster@v1/tell")
        for allowed in (agent, boss):
            # tell makes the server send an event to the target: here the caller itself, then answer.
            msg_id = await allowed.request("server", "cluster@v1/tell", {"target": allowed.cid, "method": "x@v1/y"})
            told = await allowed.recv()
            assert (told["from"], told["type"], told["payload"]) == ("server", "event", {"method": "x@v1/y"}), told
            expect_response(await allowed.recv(), id=msg_id, to=allowed.cid)
        # Refused before the handler is looked up: a method one may not call does not reveal whether it exists.
        await refused(user, user.request, "server", "cluster@v1/nothing-here")
        msg_id = await agent.request("server", "cluster@v1/nothing-here")
        expect_fail(await agent.recv(), "METHOD_NOT_FOUND", id=msg_id, to=agent.cid)
        # The built-in ping is never subject to the policy.
        await user.ping()


@aio
async def test_relay_requests_and_events_by_target_and_method(server: GatewayProcess) -> None:
    async with Clients(server) as clients:
        placed = Placed(server, clients)
        user = await placed.open(uid("user"))
        other = await placed.open(uid("other"), worker=1)
        support = await placed.open(uid("support-"), worker=1)
        await visible(user, support, "chat@v1/probe")
        # Allowed: chat@v1/* to support-*, request and event; the answer comes back as usual.
        msg_id = await user.request(support.cid, "chat@v1/help", {"q": 1})
        got = await support.recv()
        assert (got["from"], got["id"], got["payload"]["method"]) == (user.cid, msg_id, "chat@v1/help"), got
        await support.respond(user.cid, msg_id, "success", receipt="ok")
        expect_response(await user.recv(), id=msg_id, to=user.cid, frm=support.cid, receipt="ok")
        msg_id = await user.event(support.cid, "chat@v1/typing")
        assert (await support.recv())["id"] == msg_id
        # Refused on the sender's side: another method to support-*, chat to someone not support-*,
        # and to an id connected nowhere (PERMISSION_DENIED, not NOT_FOUND: no presence is revealed).
        for send in (user.request, user.event):
            await refused(user, send, support.cid, "admin@v1/reset")
            await refused(user, send, other.cid, "chat@v1/help")
            await refused(user, send, uid("nobody"), "chat@v1/help")
        await settled(user, support, other)


@aio
async def test_a_role_or_an_id_may_message_anyone(server: GatewayProcess) -> None:
    async with Clients(server) as clients:
        placed = Placed(server, clients)
        agent = await placed.open(uid("agent"), "agent")
        boss = await placed.open("boss")
        target = await placed.open(uid("user"), worker=1)
        await visible(agent, target, "chat@v1/probe")
        for sender in (agent, boss):
            for send in (sender.request, sender.event):
                msg_id = await send(target.cid, "admin@v1/anything")
                got = await target.recv()
                assert (got["from"], got["id"], got["payload"]["method"]) == (
                    sender.cid,
                    msg_id,
                    "admin@v1/anything",
                ), got


@aio
async def test_only_the_announcer_role_broadcasts(server: GatewayProcess) -> None:
    async with Clients(server) as clients:
        placed = Placed(server, clients)
        announcer = await placed.open(uid("ann"), "announcer")
        agent = await placed.open(uid("agent"), "agent")
        listener = await placed.open(uid("user"), worker=1)
        await refused(agent, agent.event, "client", "news@v1/today")
        await refused(announcer, announcer.event, "client", "chat@v1/hello")
        msg_id = await announcer.event("client", "news@v1/today", {"n": 1})
        got = await listener.recv()
        assert (got["from"], got["id"], got["payload"]) == (
            announcer.cid,
            msg_id,
            {"method": "news@v1/today", "params": {"n": 1}},
        ), got
        assert (await agent.recv())["id"] == msg_id
        await settled(announcer, listener)
        await listener.silent(0.2)  # on two workers, a second copy would cross NATS


@aio
async def test_roles_from_the_token_file_at_login(config: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-agent alice agent,reader\ntok-ann bob announcer\ntok-plain carol\n")
    with GatewayProcess("--app", APP, "--config", config, "--auth", f"tokens:{tokens}") as gateway:
        async with Clients(gateway) as clients:
            peers = {}
            for name, secret in (("alice", "tok-agent"), ("bob", "tok-ann"), ("carol", "tok-plain")):
                peer = await clients.open("compact")
                reply = await peer.login("", {"token": secret})
                assert reply["payload"] == {"result": "success", "receipt": name}, reply
                peers[name] = peer
            alice, bob, carol = peers["alice"], peers["bob"], peers["carol"]
            msg_id = await alice.request("server", "cluster@v1/tell", {"target": carol.cid, "method": "x@v1/y"})
            assert (await carol.recv())["payload"] == {"method": "x@v1/y"}
            expect_response(await alice.recv(), id=msg_id, to="alice")
            await refused(carol, carol.request, "server", "cluster@v1/tell")
            await refused(carol, carol.event, "client", "news@v1/today")
            await refused(bob, bob.request, carol.cid, "admin@v1/x")
            msg_id = await bob.event("client", "news@v1/today")
            for peer in (alice, carol):
                assert (await peer.recv())["id"] == msg_id
