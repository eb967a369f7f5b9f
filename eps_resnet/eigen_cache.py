"""Eigen's CPU cache sizes, pinned to fixed values for portable CPU kernels.

Eigen (TensorFlow's CPU kernels, and its matrix multiplications even with the oneDNN rewrites
off) cuts a matrix product into blocks sized by the CPU's caches, which it reads once with
``cpuid``. The blocking fixes the order in which long reductions are summed, so two CPUs with
the same instruction set but other cache sizes compute other float32 bits: measured with the
test suite's golden digits run on a 2-core AMD EPYC with 1 MiB of L2 per core, the run matched
tests/golden only with Eigen's L2 size set to 512 KiB (the AVX2-only EPYCs' size); L1 (32 or
48 KiB) and L3 (8 to 64 MiB) changed nothing there.

Eigen keeps the sizes in a function-local static (``manage_caching_sizes``'s ``m_cacheSizes``),
one copy in each TensorFlow library that holds kernels. :func:`pin` finds each copy through the
library's ELF symbol table and writes the fixed sizes there, marking the static as constructed
so that Eigen never queries the CPU. It must run after ``import tensorflow`` and before the first
kernel: :mod:`eps_resnet.compat` calls it from TensorFlow's import.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

#: L1, L2, L3 in bytes: what Eigen reads on the AVX2-only AMD EPYCs that wrote tests/golden/
PORTABLE_SIZES = (32 << 10, 512 << 10, 16 << 20)
#: The TensorFlow libraries with a copy of Eigen's cache sizes (kernels in the second).
LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")

_STATIC = b"_ZZN5Eigen8internal20manage_caching_sizesENS_6ActionEPlS2_S2_E12m_cacheSizes"
_GUARD = b"_ZGVZN5Eigen8internal20manage_caching_sizesENS_6ActionEPlS2_S2_E12m_cacheSizes"
_SHT_SYMTAB = 2


def describe(sizes: tuple[int, int, int] = PORTABLE_SIZES) -> str:
    """``32K/512K/16M``: the sizes as run.yaml records them."""
    return "/".join(f"{s >> 20}M" if s >= 1 << 20 and not s % (1 << 20) else f"{s >> 10}K"
                    for s in sizes)


def _symbol_offsets(path: str, names: list[bytes]) -> dict[bytes, int]:
    """Offsets of ``names`` in the full symbol table (.symtab, local symbols included) of the
    ELF shared object ``path``."""
    import numpy as np

    entry = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                      ("value", "<u8"), ("size", "<u8")])
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:5] != b"\x7fELF\x02":
            return {}
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize)
                    for i in range(shnum)]
        found = {}
        for sec in sections:
            if sec[1] != _SHT_SYMTAB:
                continue
            strings = sections[sec[6]]
            start, end = strings[4], strings[4] + strings[5]
            symbols = np.frombuffer(m, entry, count=sec[5] // entry.itemsize, offset=sec[4])
            for name in names:
                at = m.find(b"\0" + name + b"\0", start, end)
                if at >= 0:
                    hit = symbols["value"][symbols["name"] == at + 1 - start]
                    if len(hit):
                        found[name] = int(hit[0])
            del symbols  # the mmap cannot close while numpy holds a view of it
        return found


def _load_address(path: str) -> int | None:
    """Where the loader put ``path`` in this process (its mapping at file offset 0)."""
    real = os.path.realpath(path)
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and int(parts[2], 16) == 0 and os.path.realpath(parts[5]) == real:
                return int(parts[0].split("-")[0], 16)
    return None


def _statics(tensorflow_dir: str):
    """(library, sizes, guard) of each loaded copy; raises LookupError where one is not found."""
    for library in LIBRARIES:
        path = os.path.join(tensorflow_dir, library)
        if not os.path.exists(path):
            continue
        base = _load_address(path)
        offsets = _symbol_offsets(path, [_STATIC, _GUARD])
        if base is None or len(offsets) < 2:
            raise LookupError(f"not pinned: Eigen's cache sizes not found in {library}")
        yield (library, (ctypes.c_int64 * 3).from_address(base + offsets[_STATIC]),
               ctypes.c_uint8.from_address(base + offsets[_GUARD]))


def current(tensorflow_dir: str) -> dict[str, tuple[int, int, int]]:
    """The cache sizes each loaded TensorFlow library's Eigen holds now ((0, 0, 0): not read
    from the CPU yet)."""
    return {library: tuple(sizes) for library, sizes, _ in _statics(tensorflow_dir)}


def pin(tensorflow_dir: str, sizes: tuple[int, int, int] = PORTABLE_SIZES) -> str:
    """Write ``sizes`` into every loaded copy of Eigen's cache sizes; returns what run.yaml
    records: :func:`describe` of the sizes, or why they could not be pinned."""
    try:
        statics = list(_statics(tensorflow_dir))
    except LookupError as e:
        return str(e)
    for _, static, guard in statics:
        static[:] = sizes
        # the Itanium C++ ABI's "constructed" flag: Eigen then never reads the CPU's sizes
        guard.value = 1
    return describe(sizes) if statics else "not pinned: no TensorFlow library found"
