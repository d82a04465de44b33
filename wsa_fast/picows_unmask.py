"""Point picows's unmask function at the gateway's, which keeps the payload in the cache.

picows 2.3.1 unmasks every client payload with non-temporal stores (see ``unmask_cached`` in
src_cy/wsa_fast/_picows_internals.pxd for why that costs): the kernel it picked lives in a module
variable, ``apply_mask_fast``, that is not exported. Its address is found from the extension's ELF
symbol table (its offset) and an exported function of the same library (where that library was
loaded). The swap happens only if that variable holds exactly what picows's own
``get_apply_mask_fast_fn()`` returns, so a picows built differently is left as it is.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct

__all__ = ["use_cached_unmask"]

log = logging.getLogger("wsa_fast.server")

SLOT = b"__pyx_v_6picows_6picows_apply_mask_fast"  # Cython's name for picows.pyx's apply_mask_fast
ANCHOR = b"get_apply_mask_fast_fn"  # exported by picows's mask_dispatch.c
SHT_SYMTAB = 2


def symbol_offsets(path: str, names: tuple[bytes, ...]) -> dict[bytes, tuple[int, int]]:
    """``{name: (value, size)}`` of those of ``names`` in the 64-bit little-endian ELF file's .symtab."""
    with open(path, "rb") as f:
        elf = f.read()
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return {}
    shoff, shentsize, shnum = struct.unpack_from("<Q", elf, 0x28)[0], *struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    found: dict[bytes, tuple[int, int]] = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != SHT_SYMTAB or not entsize:
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, entsize):
            name_at, _st_info, _other, _shndx, value, sym_size = struct.unpack_from("<IBBHQQ", elf, at)
            start = strings + name_at
            name = elf[start : elf.index(b"\0", start)]
            if name in names:
                found[name] = (value, sym_size)
    return found


def use_cached_unmask() -> bool:
    """Swap picows's unmask kernel for the gateway's; False (and nothing changed) if it cannot be done safely."""
    from picows import picows

    from ._frame_gate import unmask_kernel_address

    path = picows.__file__
    try:
        offsets = symbol_offsets(path, (SLOT, ANCHOR))
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except (OSError, struct.error, ValueError) as error:
        log.debug("picows unmasks with its own kernel: %s", error)
        return False
    if SLOT not in offsets or ANCHOR not in offsets or offsets[SLOT][1] != ctypes.sizeof(ctypes.c_void_p):
        log.debug("picows unmasks with its own kernel: %s has no symbol table for it", path)
        return False
    chooser = library.get_apply_mask_fast_fn
    chooser.restype = ctypes.c_void_p
    ours = unmask_kernel_address()
    loaded_at = (ctypes.cast(chooser, ctypes.c_void_p).value or 0) - offsets[ANCHOR][0]
    slot = ctypes.c_void_p.from_address(loaded_at + offsets[SLOT][0])
    if slot.value == ours:
        return True
    if slot.value != chooser():
        log.debug("picows unmasks with its own kernel: its kernel pointer is not where expected")
        return False
    slot.value = ours
    log.debug("picows unmasks client payloads with the gateway's kernel (ordinary stores)")
    return True
