"""Compiled kernels for the fast mask stream (dropbench/masks.py), used where numba is installed.

Each kernel computes in one pass over the elements what masks.py's numpy code computes in a
dozen: SplitMix64 over the counter words, the lanes' comparison, the dropout factor and, for
`scaled`, its product with the activations. The arithmetic is the same unsigned 64-bit integer
arithmetic, and the product one IEEE multiply in the tensor's dtype, so the results are the same
bits as the numpy path's (tests/test_mask_kernels.py); only the speed differs. numba installs
from wheels (LLVM included), so no compiler is needed; importing this module compiles the
kernels (or loads them from numba's disk cache) and fails where numba is missing, and masks.py
then runs its numpy code, with the same numbers.

Arrays are C-contiguous, per member a contiguous run (member rows: `ms` elements apart), so that
LLVM vectorises the word loop. The kernels run on one thread and release the GIL: the batched
engine's workers call them at once.
"""

from __future__ import annotations

from numba import boolean, float32, float64, int64, njit, uint16, uint64, void

GAMMA = uint64(0x9E3779B97F4A7C15)
_M1, _M2 = uint64(0xBF58476D1CE4E5B9), uint64(0x94D049BB133111EB)
_LANE = uint64(0xFFFF)


def _jit(*sigs):  # type: ignore[no-untyped-def]
    # signatures given: compiled at import (from the disk cache after the first time), never mid-run
    return njit(list(sigs), nogil=True, cache=True, boundscheck=False)


@njit(inline="always")
def _word(key, w):  # type: ignore[no-untyped-def]
    """SplitMix64's output function of the counter word w (masks._mix)."""
    x = key + uint64(w) * GAMMA
    x ^= x >> uint64(30)
    x *= _M1
    x ^= x >> uint64(27)
    x *= _M2
    x ^= x >> uint64(31)
    return x


@njit(inline="always")
def _lane(x, e):  # type: ignore[no-untyped-def]
    return (x >> uint64(16 * (e & 3))) & _LANE


@_jit(void(uint64[::1], uint64, int64, uint16[::1], boolean[:, ::1]))
def keep(keys, draw, lo, thr, out):  # type: ignore[no-untyped-def]
    """out[c, i] = whether element lo + i of member c's draw is kept (its lane <= thr[c]); member
    c's key for the draw is mix64(keys[c] ^ draw), as masks.CounterStream.lanes makes it."""
    C, n = out.shape
    hi = lo + n
    wa, wb = (lo + 3) >> 2, hi >> 2  # the whole words within lo .. hi
    for c in range(C):
        k, t = _word(keys[c] ^ draw, 0), uint64(thr[c])
        o = out[c]
        for e in range(lo, min(4 * wa, hi)):
            o[e - lo] = _lane(_word(k, e >> 2), e) <= t
        ob = o[4 * wa - lo:]  # from the first whole word: indices from 0, so LLVM vectorises
        for j in range(wb - wa):
            x = _word(k, wa + j)
            ob[4 * j] = (x & _LANE) <= t
            ob[4 * j + 1] = ((x >> uint64(16)) & _LANE) <= t
            ob[4 * j + 2] = ((x >> uint64(32)) & _LANE) <= t
            ob[4 * j + 3] = (x >> uint64(48)) <= t
        for e in range(max(4 * wb, 4 * wa), hi):
            o[e - lo] = _lane(_word(k, e >> 2), e) <= t


def _factor(keys, draw, lo, thr, values, out):  # type: ignore[no-untyped-def]
    """out[c, i] = values[c] where element lo + i of member c's draw is kept, else 0."""
    C, n = out.shape
    hi = lo + n
    wa, wb = (lo + 3) >> 2, hi >> 2
    for c in range(C):
        k, t, v = _word(keys[c] ^ draw, 0), uint64(thr[c]), values[c]
        z = v - v
        o = out[c]
        for e in range(lo, min(4 * wa, hi)):
            o[e - lo] = v if _lane(_word(k, e >> 2), e) <= t else z
        ob = o[4 * wa - lo:]
        for j in range(wb - wa):
            x = _word(k, wa + j)
            ob[4 * j] = v if (x & _LANE) <= t else z
            ob[4 * j + 1] = v if ((x >> uint64(16)) & _LANE) <= t else z
            ob[4 * j + 2] = v if ((x >> uint64(32)) & _LANE) <= t else z
            ob[4 * j + 3] = v if (x >> uint64(48)) <= t else z
        for e in range(max(4 * wb, 4 * wa), hi):
            o[e - lo] = v if _lane(_word(k, e >> 2), e) <= t else z


factor = _jit(*[void(uint64[::1], uint64, int64, uint16[::1], f[::1], f[:, ::1]) for f in (float32, float64)])(_factor)


def _scaled(keys, draw, lo, thr, values, n, x, xs, out, os):  # type: ignore[no-untyped-def]
    """Member c's out[c*os : c*os + n] = x[c*xs : c*xs + n] * its factor (values[c] where element
    lo + i of its draw is kept, else 0): an MC pass's dropout, whose factor no backward needs."""
    C = keys.shape[0]
    hi = lo + n
    wa, wb = (lo + 3) >> 2, hi >> 2
    for c in range(C):
        k, t, v = _word(keys[c] ^ draw, 0), uint64(thr[c]), values[c]
        z = v - v
        xc, oc = x[c * xs: c * xs + n], out[c * os: c * os + n]
        for e in range(lo, min(4 * wa, hi)):
            oc[e - lo] = xc[e - lo] * (v if _lane(_word(k, e >> 2), e) <= t else z)
        xb, ob = xc[4 * wa - lo:], oc[4 * wa - lo:]
        for j in range(wb - wa):
            w = _word(k, wa + j)
            ob[4 * j] = xb[4 * j] * (v if (w & _LANE) <= t else z)
            ob[4 * j + 1] = xb[4 * j + 1] * (v if ((w >> uint64(16)) & _LANE) <= t else z)
            ob[4 * j + 2] = xb[4 * j + 2] * (v if ((w >> uint64(32)) & _LANE) <= t else z)
            ob[4 * j + 3] = xb[4 * j + 3] * (v if (w >> uint64(48)) <= t else z)
        for e in range(max(4 * wb, 4 * wa), hi):
            oc[e - lo] = xc[e - lo] * (v if _lane(_word(k, e >> 2), e) <= t else z)


def _scaled_factor(keys, draw, lo, thr, values, n, x, xs, out, os, f):  # type: ignore[no-untyped-def]
    """_scaled, and each member's factor into f[c, :] (a training step's backward multiplies by it)."""
    C = keys.shape[0]
    hi = lo + n
    wa, wb = (lo + 3) >> 2, hi >> 2
    for c in range(C):
        k, t, v = _word(keys[c] ^ draw, 0), uint64(thr[c]), values[c]
        z = v - v
        xc, oc, fc = x[c * xs: c * xs + n], out[c * os: c * os + n], f[c]
        for e in range(lo, min(4 * wa, hi)):
            m = v if _lane(_word(k, e >> 2), e) <= t else z
            fc[e - lo] = m
            oc[e - lo] = xc[e - lo] * m
        xb, ob, fb = xc[4 * wa - lo:], oc[4 * wa - lo:], fc[4 * wa - lo:]
        for j in range(wb - wa):
            w = _word(k, wa + j)
            m0 = v if (w & _LANE) <= t else z
            m1 = v if ((w >> uint64(16)) & _LANE) <= t else z
            m2 = v if ((w >> uint64(32)) & _LANE) <= t else z
            m3 = v if (w >> uint64(48)) <= t else z
            fb[4 * j], fb[4 * j + 1], fb[4 * j + 2], fb[4 * j + 3] = m0, m1, m2, m3
            ob[4 * j] = xb[4 * j] * m0
            ob[4 * j + 1] = xb[4 * j + 1] * m1
            ob[4 * j + 2] = xb[4 * j + 2] * m2
            ob[4 * j + 3] = xb[4 * j + 3] * m3
        for e in range(max(4 * wb, 4 * wa), hi):
            m = v if _lane(_word(k, e >> 2), e) <= t else z
            fc[e - lo] = m
            oc[e - lo] = xc[e - lo] * m


_FLOATS = (float32, float64)
scaled = _jit(*[void(uint64[::1], uint64, int64, uint16[::1], f[::1], int64, f[::1], int64, f[::1], int64) for f in _FLOATS])(_scaled)
scaled_factor = _jit(*[void(uint64[::1], uint64, int64, uint16[::1], f[::1], int64, f[::1], int64, f[::1], int64, f[:, ::1])
                       for f in _FLOATS])(_scaled_factor)
