"""Command line of the floor echo server (compiled `floor_echo`)."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--single-write", action="store_true", help="one transport.send per message")
    a = p.parse_args(argv)
    import floor_echo
    import uvloop

    from wsa_fast.picows_unmask import use_cached_unmask

    # The least a gateway on picows does includes unmasking as the gateway does (docs/architecture.md).
    use_cached_unmask()

    try:
        uvloop.run(floor_echo.serve(a.host, a.port, a.single_write))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
