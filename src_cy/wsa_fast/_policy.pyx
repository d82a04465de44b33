# cython: language_level=3, boundscheck=False, wraparound=False
"""The access policy (wsa_fast.policy) compiled into what one message's check costs.

Each id and role a rule names is a bit; a connection carries the mask of the ones it
is (bit 0, "*", always), computed once at login. Per kind, ``all_of`` is the mask of
principals allowed everything: with no policy, or for a kind no rule names, it is every
bit, and the gateway's check is one AND. Otherwise ``allows`` scans that kind's rules,
C structs with exact or prefix patterns.
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp

from wsa_fast._codec cimport str_of

from wsa_fast.policy import EVERYONE, KINDS, ROLE_PREFIX

cdef uint64_t EVERY_BIT = ~(<uint64_t>0)


cdef inline bint matches(const Pattern* pattern, Str value) noexcept:
    if pattern.prefix:
        return value.n >= pattern.n and memcmp(value.p, pattern.p, pattern.n) == 0
    return value.n == pattern.n and memcmp(value.p, pattern.p, pattern.n) == 0


cdef class Policy:
    """``Policy(None)`` allows everything; ``Policy(parse_policy(table))`` enforces the table."""

    def __cinit__(self, rules=None):
        cdef int kind
        self.keep = []
        self.bits = {EVERYONE: 1}
        for kind in range(3):
            self.all_of[kind] = EVERY_BIT
            self.rules[kind] = NULL
            self.rules_n[kind] = 0
        if rules is None:
            return
        for index, name in enumerate(rules.principals()):
            self.bits[name] = (<uint64_t>1) << index
        for kind, name in enumerate(KINDS):
            mine = [rule for rule in rules.rules if rule.kind == name]
            if not mine:
                continue
            self.all_of[kind] = 0
            # One slot per (method, target) pair of each rule.
            self.rules[kind] = <Rule*>calloc(sum(len(r.methods) * len(r.to) for r in mine), sizeof(Rule))
            if self.rules[kind] == NULL:
                raise MemoryError()
            for rule in mine:
                who = self.mask(rule.who)
                for method in rule.methods:
                    for to in rule.to:
                        if method == EVERYONE and to == EVERYONE:
                            self.all_of[kind] |= who
                        self.add(kind, who, method, to)

    def __dealloc__(self):
        for kind in range(3):
            free(self.rules[kind])

    cdef uint64_t mask(self, names) except? 0:
        cdef uint64_t bits = 0
        for name in names:
            bits |= <uint64_t>self.bits[name]
        return bits

    cdef add(self, int kind, uint64_t who, str method, str to):
        cdef Rule* rule = &self.rules[kind][self.rules_n[kind]]
        rule.who = who
        self.pattern(&rule.method, method)
        self.pattern(&rule.to, to)
        self.rules_n[kind] += 1

    cdef pattern(self, Pattern* out, str text):
        cdef bytes data = text.encode()
        self.keep.append(data)
        out.prefix = data.endswith(b"*")
        out.p = <const char*>data
        out.n = len(data) - 1 if out.prefix else len(data)

    def principals_of(self, str client_id, roles=()):
        """The mask of a client: "*", its id and its roles, as far as the policy names them."""
        cdef uint64_t bits = 1
        bits |= <uint64_t>self.bits.get(client_id, 0)
        for role in roles:
            bits |= <uint64_t>self.bits.get(ROLE_PREFIX + role, 0)
        return bits

    cdef bint allows(self, int kind, uint64_t principals, Str method, Str to) noexcept:
        cdef Py_ssize_t i
        cdef const Rule* rule
        if principals & self.all_of[kind]:
            return True
        for i in range(self.rules_n[kind]):
            rule = &self.rules[kind][i]
            if rule.who & principals and matches(&rule.method, method) and matches(&rule.to, to):
                return True
        return False

    def permits(self, str kind, uint64_t principals, str method, str to=""):
        """``allows`` from Python, for the tests that hold it to ``PolicyRules.allows``."""
        cdef bytes method_b = method.encode(), to_b = to.encode()
        return self.allows(KINDS.index(kind), principals, str_of(method_b), str_of(to_b))
