# Close codes the server sends, defined once: included by _gateway.pyx (which exports CloseCode to
# Python: wsa_fast.cluster, tests) and by _frame_gate.pyx. Reasons: docs/protocol.md "Close codes".

# RFC 6455 section 7.4; 4000+ is the application's range.
cpdef enum CloseCode:
    CLOSE_GOING_AWAY = 1001         # shutdown
    CLOSE_PROTOCOL_ERROR = 1002     # a frame broke RFC 6455 (the FrameGate)
    CLOSE_INVALID_TEXT = 1007       # a TEXT message that is not UTF-8
    CLOSE_POLICY = 1008             # too many invalid or rate-limited messages, id already connected
    CLOSE_TOO_BIG = 1009            # a message over max_message_size
    CLOSE_INTERNAL_ERROR = 1011     # the app's on_join hook failed for a handshake-token login
    CLOSE_TRY_AGAIN_LATER = 1013    # unfinished messages hold max_partial_memory
    CLOSE_REPLACED = 4001           # the same id logged in again elsewhere
