class ClientTable:
    def __len__(self) -> int: ...
    def ids(self) -> list[str]: ...

class PendingTable:
    def __len__(self) -> int: ...

class RemoteWorker:
    wid: str
    subject: bytes
    reachable: bool
    def __init__(self, wid: str, subject: bytes) -> None: ...

class RemoteClient:
    client_id: str
    client_id_b: bytes
    worker: RemoteWorker
    stamp: int
    def __init__(self, client_id: str, worker: RemoteWorker, stamp: int) -> None: ...
