"""Many workers, on any number of machines, as one gateway: presence and records over NATS.

Subjects (``P`` is ``cluster_name``):

- ``P.w.<worker>``: batches of records for one worker (``ClusterRouter.forward``, in
  src_cy/wsa_fast/engine/cluster_router.pyx), each
  published with the sender's own subject as reply-to, so a record can bounce back.
- ``P.all``: batches every worker reads: broadcasts, crossing NATS once per worker.
- ``P.presence``: who is bound where. Each worker announces its logins and logouts
  (``up``, numbered), a heartbeat carrying that number (``hb``), its whole list on request
  (``sync``), ``hello`` when it (re)connects and ``bye`` when it stops. A gap in the
  numbers asks for a ``sync``; a worker silent for ``PRESENCE_TIMEOUT`` is forgotten, and
  the requests pending on its clients get ``GONE``.

Every binding carries its login time: the newest login of an id wins everywhere, whatever
order announcements arrive in, and a worker holding an older binding of it closes it with
4001 (or, under ``duplicate_login = "reject"``, the newer one is refused or closed).
docs/cluster.md gives the reasons and the measurements.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Any

import orjson

from ._gateway import CloseCode, ClusterRouter, Metric
from ._routing import RemoteClient, RemoteWorker
from .nats_client import NatsClient, load_credentials, parse_servers, tls_context

__all__ = ["Cluster", "HEARTBEAT", "PRESENCE_TIMEOUT"]

log = logging.getLogger("wsa_fast.cluster")

HEARTBEAT = 1.0
# A worker not heard from for this long (while we are connected) is taken for dead.
PRESENCE_TIMEOUT = 3.5
# Ids per presence message, so that a message stays far below NATS's max_payload.
CHUNK = 2000
# After hello, how long a starting worker waits for the others' lists before serving.
SYNC_WAIT = 0.3


class WorkerState:
    """What this worker knows of another's presence protocol: when it spoke, its last announcement
    number. Which clients it holds is the router's (``ClusterRouter.clients_on``)."""

    __slots__ = ("worker", "last_seen", "version", "sync_parts", "sync_asked")

    def __init__(self, worker: RemoteWorker, now: float) -> None:
        self.worker = worker
        self.last_seen = now
        self.version = 0
        self.sync_parts: list[list[Any]] = []
        self.sync_asked = -1e9


class Cluster:
    def __init__(self, gateway: Any, settings: Any) -> None:
        self.gw = gateway
        self.router = ClusterRouter(gateway, self)  # from now on the gateway's router
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.reject = settings.duplicate_login == "reject"
        prefix = settings.cluster_name
        self.prefix = prefix
        self.wid = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.subject = f"{prefix}.w.{self.wid}".encode()
        self.presence_subject = f"{prefix}.presence".encode()
        self.everyone = RemoteWorker("*", f"{prefix}.all".encode())
        self.workers: dict[str, WorkerState] = {}
        self.joins: list[list[Any]] = []
        self.leaves: list[list[Any]] = []
        self.version = 0
        self.presence_scheduled = False
        self.nats: NatsClient | None = None  # from start() on; what calls back or is scheduled comes after
        self.heartbeat_task: asyncio.Task | None = None

    # ---- lifecycle ----

    async def start(self, timeout: float) -> None:
        """Join the cluster: connect, subscribe, announce, and wait briefly for the others' lists."""
        settings = self.settings
        tls = tls_context(settings.nats_ca_file) if settings.nats_ca_file is not None else None
        self.nats = NatsClient(
            parse_servers(settings.nats),
            f"wsa-fast {self.wid}",
            on_up=self._up,
            on_down=self._down,
            tls=tls,
            credentials=load_credentials(settings.nats_creds_file, settings.nats_nkey_seed_file),
        )
        self.nats.subscribe(self.subject, self.router)
        self.nats.subscribe(self.everyone.subject, self.router)
        self.nats.subscribe(self.presence_subject, self._on_presence)
        await self.nats.connect(timeout)
        self.heartbeat_task = self.loop.create_task(self._heartbeat())
        await asyncio.sleep(SYNC_WAIT)
        log.info("worker %s joined the cluster %r (%d other workers)", self.wid, self.prefix, len(self.workers))

    async def close(self) -> None:
        """Announce the last logouts and leave, so the others need not wait for a timeout."""
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
        if self.nats is None:
            return
        self.flush_presence()
        self._send({"k": "bye"})
        await self.nats.flush()
        await self.nats.close()
        self.router.up = False

    def _up(self, again: bool) -> None:
        assert self.nats is not None
        if again:
            self.gw.count(Metric.NATS_RECONNECTS)
        now = self.loop.time()
        for state in self.workers.values():
            state.last_seen = now  # their silence while we were away says nothing about them
            # Until a worker speaks again it may still be reconnecting itself: what we send it could be lost.
            state.worker.reachable = not again
        self.router.attach(self.everyone, self.nats.write_commands, self.subject, self.nats.max_payload)
        self.router.up = True
        self._send({"k": "hello"})
        if again:
            self._send_sync()

    def _down(self) -> None:
        self.router.up = False

    def _send(self, message: dict) -> None:
        assert self.nats is not None
        message["w"] = self.wid
        self.nats.publish(self.presence_subject, orjson.dumps(message))

    async def _heartbeat(self) -> None:
        assert self.nats is not None
        while True:
            await asyncio.sleep(HEARTBEAT)
            if not self.nats.connected:
                continue
            self._send({"k": "hb", "v": self.version})
            now = self.loop.time()
            for wid, state in list(self.workers.items()):
                if now - state.last_seen > PRESENCE_TIMEOUT:
                    self._forget(wid, f"silent for {now - state.last_seen:.1f}s")
            self.router.purge_requests()

    # ---- this worker's own clients ----

    def joined(self, client_id: str, stamp: int) -> None:
        self.joins.append([client_id, stamp])
        self._schedule_presence()

    def left(self, client_id: str, stamp: int) -> None:
        self.leaves.append([client_id, stamp])
        self._schedule_presence()

    def _schedule_presence(self) -> None:
        if not self.presence_scheduled:
            self.presence_scheduled = True
            self.loop.call_soon(self.flush_presence)

    def flush_presence(self) -> None:
        """Announce this loop iteration's logins and logouts (numbered, so a gap shows)."""
        self.presence_scheduled = False
        while self.joins or self.leaves:
            joins, self.joins = self.joins[:CHUNK], self.joins[CHUNK:]
            leaves, self.leaves = self.leaves[:CHUNK], self.leaves[CHUNK:]
            self.version += 1
            assert self.nats is not None  # clients log in once the cluster has started
            if self.nats.connected:
                self._send({"k": "up", "v": self.version, "join": joins, "leave": leaves})

    def _send_sync(self) -> None:
        ids = self.gw.local_presence()
        chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)] or [[]]
        for i, chunk in enumerate(chunks):
            self._send({"k": "sync", "v": self.version, "ids": chunk, "last": i == len(chunks) - 1})

    # ---- other workers' clients ----

    def worker_for_subject(self, subject: bytes) -> RemoteWorker | None:
        """The worker that sent a batch (known or not yet): bounces go back to it."""
        head = f"{self.prefix}.w.".encode()
        if not subject.startswith(head):
            return None
        return self._state(subject[len(head) :].decode()).worker

    def _state(self, wid: str) -> WorkerState:
        state = self.workers.get(wid)
        if state is None:
            worker = RemoteWorker(wid, f"{self.prefix}.w.{wid}".encode())
            state = self.workers[wid] = WorkerState(worker, self.loop.time())
            self.router.add_worker(worker)
        return state

    def _on_presence(self, payload: bytes, reply: bytes | None) -> None:
        message = orjson.loads(payload)
        wid, kind = message["w"], message["k"]
        if wid == self.wid:
            return
        if kind == "bye":
            self._forget(wid, "stopped")
            return
        state = self._state(wid)
        state.last_seen = self.loop.time()
        state.worker.reachable = True
        if kind == "hello":
            if message.get("to") in (None, self.wid):
                self._send_sync()
        elif kind == "hb":
            if message["v"] != state.version:
                self._ask_sync(wid, state)
        elif kind == "up":
            if message["v"] != state.version + 1:
                self._ask_sync(wid, state)
            state.version = message["v"]
            for client_id, stamp in message["leave"]:
                self._leave(state, client_id, stamp)
            for client_id, stamp in message["join"]:
                self._join(state, client_id, stamp)
        elif kind == "sync":
            state.sync_parts.extend(message["ids"])
            if message["last"]:
                listed = dict(state.sync_parts)
                state.sync_parts = []
                state.version = message["v"]
                known = {entry.client_id: entry for entry in self.router.clients_on(state.worker)}
                for client_id, entry in known.items():
                    if listed.get(client_id) != entry.stamp:
                        self._leave(state, client_id, entry.stamp)
                for client_id, stamp in listed.items():
                    if client_id not in known:
                        self._join(state, client_id, stamp)

    def _ask_sync(self, wid: str, state: WorkerState) -> None:
        now = self.loop.time()
        if now - state.sync_asked >= HEARTBEAT:
            state.sync_asked = now
            self._send({"k": "hello", "to": wid})

    def _join(self, state: WorkerState, client_id: str, stamp: int) -> None:
        current = self.router.remote_client(client_id)
        if current is not None and current.stamp >= stamp:
            return  # we already know of a newer login of this id
        local = self.gw.client(client_id)
        if local is not None and not local.closed:
            if self.reject and local.stamp > stamp:
                local.send_close(CloseCode.CLOSE_POLICY, "client id already connected")
            elif not self.reject and local.stamp < stamp:
                log.info(
                    "client %s logged in again on worker %s; closing the older connection", client_id, state.worker.wid
                )
                local.send_close(CloseCode.CLOSE_REPLACED, "replaced")
        self.router.add_remote(RemoteClient(client_id, state.worker, stamp))

    def _leave(self, state: WorkerState, client_id: str, stamp: int) -> None:
        entry = self.router.remote_client(client_id)
        if entry is not None and entry.worker is state.worker and entry.stamp == stamp:
            self.router.drop_remote(entry)

    def _forget(self, wid: str, why: str) -> None:
        state = self.workers.pop(wid, None)
        if state is None:
            return
        clients = self.router.clients_on(state.worker)
        log.log(
            logging.INFO if why == "stopped" else logging.WARNING,
            "worker %s %s: forgetting its %d clients",
            wid,
            why,
            len(clients),
        )
        for entry in clients:
            self.router.drop_remote(entry)
        self.router.remove_worker(state.worker)
