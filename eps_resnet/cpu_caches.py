"""The CPU cache sizes TensorFlow's kernel libraries read, pinned to fixed values for portable
CPU kernels.

Three libraries inside TensorFlow size their work by the caches they read with ``cpuid``, and
the sizes decide summation orders, so two CPUs with the same instruction set but other caches
compute other float32 bits:

* Eigen cuts matrix products into blocks sized by L1, L2 and L3 (one copy of its sizes in each
  TensorFlow library with kernels). Measured: the golden digits run with Eigen's kernels on a Zen 5
  EPYC (1 MiB L2) matched the AVX2 EPYCs' (512 KiB) only with Eigen's L2 set to 512 KiB.
* oneDNN, whose convolutions, batch norms, poolings and matrix products the portable kernels run,
  chooses its blocking from the per-core L1, L2 and L3 it reads through Xbyak's ``Cpu`` object
  (its brgemm convolutions and batch norms do). Measured on an Intel Xeon whose ``cpuid``
  answers were replaced by a Zen 3's or a Zen 5's (CPUID faulting, benchmarks/cpuid_views.py):
  its AVX2 kernels trained the same weights at every shape tried (the golden digits run, ResNet-14
  at 32 x 32, ResNet-18 at 64 x 64 and ResNet-50 at 224 x 224); pinned for the shapes not tried.
* TensorFlow's oneDNN matrix products run single-threaded below a size set by L2 (one copy of
  Eigen's ``CacheSizes`` per source file that holds them).

:func:`pin` finds each copy through the library's ELF symbol table (local symbols included) and
writes the fixed sizes there: Eigen's function-local static is marked constructed so that Eigen
never reads the CPU; oneDNN's is built first (its constructor reads the instruction set too) and
then given the sizes. It must run after ``import tensorflow`` and before the first kernel:
:mod:`eps_resnet.compat` calls it from TensorFlow's import. The writes depend on the layouts of
TensorFlow 2.21's Eigen and oneDNN 3.7: each is checked against the symbol's size and the values
read back first, and a copy that does not match is left alone and reported, never guessed at.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import os
import struct

#: L1, L2, L3 in bytes: what Eigen reads on the AVX2-only AMD EPYCs that first wrote tests/golden/
PORTABLE_SIZES = (32 << 10, 512 << 10, 16 << 20)
#: The TensorFlow libraries with a copy of Eigen's cache sizes (kernels in the second).
LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")
#: The library that holds oneDNN and TensorFlow's oneDNN kernels.
ONEDNN_LIBRARY = "libtensorflow_cc.so.2"

_EIGEN_STATIC = b"_ZZN5Eigen8internal20manage_caching_sizesENS_6ActionEPlS2_S2_E12m_cacheSizes"
_EIGEN_GUARD = b"_ZGVZN5Eigen8internal20manage_caching_sizesENS_6ActionEPlS2_S2_E12m_cacheSizes"
#: ``dnnl::impl::cpu::x64::cpu()`` and the ``Xbyak::util::Cpu`` it returns (a function-local static)
_ONEDNN_CPU_FUNCTION = b"_ZN4dnnl4impl3cpu3x643cpuEv"
_ONEDNN_CPU = b"_ZZN4dnnl4impl3cpu3x643cpuEvE4cpu_"
#: ``static Eigen::internal::CacheSizes cache_sizes`` of TensorFlow's oneDNN matmul header
_TF_ONEDNN_CACHE_SIZES = b"_ZN10tensorflowL11cache_sizesE"
#: names defined in several source files, each copy with its own entry in the string table
_FILE_LOCAL = (_TF_ONEDNN_CACHE_SIZES,)
_SHT_SYMTAB = 2
#: Xbyak's Cpu in oneDNN 3.7, as 32-bit words: type flags (4), x2APIC flag (1), cores per level
#: (2), data cache sizes (10), cores sharing each (10), the number of data cache levels, ...
_XBYAK_CPU_BYTES = 144
_XBYAK_SIZES, _XBYAK_SHARING, _XBYAK_LEVELS = 7, 17, 27


def describe(sizes: tuple[int, ...] = PORTABLE_SIZES) -> str:
    """``32K/512K/16M``: the sizes as run.yaml records them."""
    return "/".join(f"{s >> 20}M" if s >= 1 << 20 and not s % (1 << 20) else f"{s >> 10}K"
                    for s in sizes)


def _symbols(path: str, names: list[bytes]) -> dict[bytes, list[tuple[int, int]]]:
    """(offset, size) of the symbols named in ``names`` in the full symbol table (.symtab, local
    symbols included) of the ELF shared object ``path``: the first of each name, and every one
    of the file-local statics in _FILE_LOCAL (one per source file that defines it)."""
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
                # (the string table is 188 MB in libtensorflow_cc: one search per name)
                at, indices = m.find(b"\0" + name + b"\0", start, end), []
                while at >= 0:
                    indices.append(at + 1 - start)
                    at = m.find(b"\0" + name + b"\0", at + 1, end) if name in _FILE_LOCAL else -1
                hits = symbols[np.isin(symbols["name"], indices) & (symbols["value"] != 0)]
                if len(hits):
                    found[name] = [(int(h["value"]), int(h["size"])) for h in hits]
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


#: every symbol looked up, per library (one pass over a library's symbol table finds them all)
_NAMES = {LIBRARIES[0]: [_EIGEN_STATIC, _EIGEN_GUARD],
          ONEDNN_LIBRARY: [_EIGEN_STATIC, _EIGEN_GUARD, _ONEDNN_CPU_FUNCTION, _ONEDNN_CPU,
                           _TF_ONEDNN_CACHE_SIZES]}


@functools.lru_cache(maxsize=None)
def _located(tensorflow_dir: str, library: str):
    """(load address, symbols) of a loaded TensorFlow library; None when it is not there."""
    path = os.path.join(tensorflow_dir, library)
    if not os.path.exists(path):
        return None
    base = _load_address(path)
    if base is None:
        raise LookupError(f"{library} is not loaded")
    return base, _symbols(path, _NAMES[library])


def _eigen_statics(tensorflow_dir: str):
    """(library, sizes, guard) of each loaded copy; raises LookupError where one is not found."""
    for library in LIBRARIES:
        located = _located(tensorflow_dir, library)
        if located is None:
            continue
        base, found = located
        if not found.get(_EIGEN_STATIC) or not found.get(_EIGEN_GUARD):
            raise LookupError(f"Eigen's cache sizes not found in {library}")
        yield (library, (ctypes.c_int64 * 3).from_address(base + found[_EIGEN_STATIC][0][0]),
               ctypes.c_uint8.from_address(base + found[_EIGEN_GUARD][0][0]))


def _onednn_cpu(tensorflow_dir: str):
    """oneDNN's Xbyak ``Cpu`` as 32-bit words, constructed (it reads the CPU once, when first
    asked); raises LookupError where it is not found or not laid out as in oneDNN 3.7."""
    located = _located(tensorflow_dir, ONEDNN_LIBRARY)
    if located is None:
        raise LookupError(f"{ONEDNN_LIBRARY} not found")
    base, found = located
    if not found.get(_ONEDNN_CPU_FUNCTION) or not found.get(_ONEDNN_CPU):
        raise LookupError(f"oneDNN's CPU description not found in {ONEDNN_LIBRARY}")
    (offset, size), = found[_ONEDNN_CPU]
    if size != _XBYAK_CPU_BYTES:
        raise LookupError(f"oneDNN's CPU description has {size} bytes, not oneDNN 3.7's "
                          f"{_XBYAK_CPU_BYTES}")
    built = ctypes.CFUNCTYPE(ctypes.c_void_p)(base + found[_ONEDNN_CPU_FUNCTION][0][0])()
    if built != base + offset:
        raise LookupError("oneDNN's cpu() returned another object than its static")
    words = (ctypes.c_uint32 * (_XBYAK_CPU_BYTES // 4)).from_address(built)
    levels = words[_XBYAK_LEVELS]
    if not 1 <= levels <= 10 or not all(words[_XBYAK_SHARING + i] for i in range(levels)):
        raise LookupError(f"oneDNN's CPU description does not read as oneDNN 3.7's ({levels} "
                          "cache levels)")
    return words


def _tensorflow_onednn_statics(tensorflow_dir: str) -> list:
    """TensorFlow's copies of Eigen's CacheSizes (l1, l2, l3) in its oneDNN matmul kernels."""
    located = _located(tensorflow_dir, ONEDNN_LIBRARY)
    if located is None:
        return []
    base, found = located
    return [(ctypes.c_int64 * 3).from_address(base + offset)
            for offset, size in found.get(_TF_ONEDNN_CACHE_SIZES, []) if size == 24]


def current(tensorflow_dir: str) -> dict[str, tuple[int, ...]]:
    """The cache sizes each pinned copy holds now: Eigen's per library ((0, 0, 0): not read from
    the CPU yet), oneDNN's per-core L1, L2, L3, and TensorFlow's oneDNN kernels' copies."""
    held = {library: tuple(sizes) for library, sizes, _ in _eigen_statics(tensorflow_dir)}
    words = _onednn_cpu(tensorflow_dir)
    held["oneDNN"] = tuple(words[_XBYAK_SIZES + i] // words[_XBYAK_SHARING + i] for i in range(3))
    for i, sizes in enumerate(_tensorflow_onednn_statics(tensorflow_dir)):
        held[f"TensorFlow oneDNN kernels {i + 1}"] = tuple(sizes)
    return held


def _pin_eigen(tensorflow_dir: str, sizes) -> str:
    statics = list(_eigen_statics(tensorflow_dir))
    for _, static, guard in statics:
        static[:] = sizes
        # the Itanium C++ ABI's "constructed" flag: Eigen then never reads the CPU's sizes
        guard.value = 1
    return describe(sizes) if statics else "not pinned: no TensorFlow library found"


def _pin_onednn(tensorflow_dir: str, sizes) -> str:
    words = _onednn_cpu(tensorflow_dir)
    for i, size in enumerate(sizes):  # per core: one core shares each level
        words[_XBYAK_SIZES + i], words[_XBYAK_SHARING + i] = size, 1
    words[_XBYAK_LEVELS] = len(sizes)
    statics = _tensorflow_onednn_statics(tensorflow_dir)
    for static in statics:
        static[:] = sizes
    return describe(sizes)


def pin(tensorflow_dir: str, sizes: tuple[int, int, int] = PORTABLE_SIZES) -> dict[str, str]:
    """Write ``sizes`` into every loaded copy; returns what run.yaml records per library
    (``eigen``, ``onednn``): :func:`describe` of the sizes, or why they could not be pinned."""
    pinned = {}
    for key, pin_one in (("eigen", _pin_eigen), ("onednn", _pin_onednn)):
        try:
            pinned[key] = pin_one(tensorflow_dir, sizes)
        except LookupError as e:
            pinned[key] = f"not pinned: {e}"
    return pinned
