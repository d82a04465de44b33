"""Coverage-guided fuzzing of the compiled decoder, with the pure-Python codec as the oracle (atheris).

    python tests/fuzz/codec.py [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]

Coverage is measured on the pure-Python reference (``wsa_fast.codec_py`` and
``wsa_fast.grammar``), whose branches are the profile's rules one by one: an input that
reaches a new rule there is kept and mutated further. Every input goes through
``codec_oracle.check``: both decoders must give the same verdict and a valid message must
round-trip through both encoders. Run it under ``make fuzz`` (an ASan+UBSan build of the
extensions, so a memory error aborts with a report). A failing input is written by
libFuzzer as ``crash-*``; keep it in tests/fuzz/corpus/codec once fixed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["wsa_fast.codec_py", "wsa_fast.grammar"]):
    from wsa_fast import codec_py  # noqa: F401  (instrumented before the oracle imports it)

from codec_oracle import check  # noqa: E402


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
