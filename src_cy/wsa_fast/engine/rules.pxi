# The protocol's names and codes the engine answers with (profile sections 4-6).

from wsa_fast import methods
from wsa_fast.errors import CODES

# The built-in method names are spelled once, in wsa_fast.methods; read when the module loads, kept here as
# C-level globals (the hot path compares against these, no Python lookup).
cdef bytes PING = methods.PING.encode()
cdef bytes LOGIN = methods.LOGIN.encode()
cdef str ERROR_EVENT = methods.ERROR_EVENT
cdef bytes EMPTY = b""

# The fail codes are listed once, in wsa_fast.errors.CODES; here as the bytes the encoder writes, in
# that order (the order of the fails_total slots too).
FAIL_CODES = tuple(code.encode() for code in CODES)


cdef bytes fail_code(str name):
    """``name`` checked against CODES when the module loads: a misspelt code fails the import, not a client."""
    cdef bytes code = name.encode()
    if code not in FAIL_CODES:
        raise ValueError(f"{name} is not in wsa_fast.errors.CODES")
    return code


cdef bytes UNAUTHENTICATED = fail_code("UNAUTHENTICATED")
cdef bytes PERMISSION_DENIED = fail_code("PERMISSION_DENIED")
cdef bytes INVALID_MESSAGE = fail_code("INVALID_MESSAGE")
cdef bytes INVALID_TARGET = fail_code("INVALID_TARGET")
cdef bytes METHOD_NOT_FOUND = fail_code("METHOD_NOT_FOUND")
cdef bytes NOT_FOUND = fail_code("NOT_FOUND")
cdef bytes TIMEOUT = fail_code("TIMEOUT")
cdef bytes GONE = fail_code("GONE")
cdef bytes DUPLICATE_ID = fail_code("DUPLICATE_ID")
cdef bytes ALREADY_AUTHENTICATED = fail_code("ALREADY_AUTHENTICATED")
cdef bytes CONFLICT = fail_code("CONFLICT")
cdef bytes UNAVAILABLE = fail_code("UNAVAILABLE")
cdef bytes INTERNAL_ERROR = fail_code("INTERNAL_ERROR")
cdef bytes RATE_LIMITED_CODE = fail_code("RATE_LIMITED")     # RATE_LIMITED is the metric
