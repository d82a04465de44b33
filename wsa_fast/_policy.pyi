from typing import Iterable

from .policy import PolicyRules

class Policy:
    all_of: list[int]
    def __init__(self, rules: PolicyRules | None = None) -> None: ...
    def principals_of(self, client_id: str, roles: Iterable[str] = ...) -> int: ...
