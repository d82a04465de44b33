# The protocol's names and codes the engine answers with, each defined once (profile sections 4-6).

cdef bytes PING = b"wsa@v1/ping"
cdef bytes LOGIN = b"auth@v1/login"
cdef str ERROR_EVENT = "wsa@v1/error"
cdef bytes EMPTY = b""

# Fail codes (profile section 6).
cdef bytes UNAUTHENTICATED = b"UNAUTHENTICATED"
cdef bytes PERMISSION_DENIED = b"PERMISSION_DENIED"
cdef bytes INVALID_MESSAGE = b"INVALID_MESSAGE"
cdef bytes INVALID_TARGET = b"INVALID_TARGET"
cdef bytes METHOD_NOT_FOUND = b"METHOD_NOT_FOUND"
cdef bytes NOT_FOUND = b"NOT_FOUND"
cdef bytes TIMEOUT = b"TIMEOUT"
cdef bytes GONE = b"GONE"
cdef bytes DUPLICATE_ID = b"DUPLICATE_ID"
cdef bytes ALREADY_AUTHENTICATED = b"ALREADY_AUTHENTICATED"
cdef bytes CONFLICT = b"CONFLICT"
cdef bytes UNAVAILABLE = b"UNAVAILABLE"
cdef bytes INTERNAL_ERROR = b"INTERNAL_ERROR"
cdef bytes RATE_LIMITED_CODE = b"RATE_LIMITED"     # RATE_LIMITED is the metric

# Every code above, in the order of their fails_total slots; any other code shares one more.
FAIL_CODES = (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_MESSAGE, INVALID_TARGET, METHOD_NOT_FOUND, NOT_FOUND,
              TIMEOUT, GONE, DUPLICATE_ID, RATE_LIMITED_CODE, ALREADY_AUTHENTICATED, CONFLICT, UNAVAILABLE,
              INTERNAL_ERROR)
