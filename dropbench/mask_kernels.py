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


@njit(inline="always")
def _span(lo, n):  # type: ignore[no-untyped-def]
    """A draw's elements lo .. lo + n - 1: their end, and the whole words within them (wa .. wb - 1)."""
    hi = lo + n
    return hi, (lo + 3) >> 2, hi >> 2


@njit(inline="always")
def _key(keys, draw, c):  # type: ignore[no-untyped-def]
    """Member c's key for the draw: mix64(keys[c] ^ draw), as masks.CounterStream.lanes makes it."""
    return _word(keys[c] ^ draw, 0)


@njit(inline="always")
def _member(keys, draw, thr, values, c):  # type: ignore[no-untyped-def]
    """Member c's key for the draw, its threshold, its factor where kept and its zero (in the factor's dtype)."""
    v = values[c]
    return _key(keys, draw, c), uint64(thr[c]), v, v - v


@njit(inline="always")
def _pick(x, shift, t, v, z):  # type: ignore[no-untyped-def]
    """The factor of the lane at `shift` bits of word x."""
    return v if ((x >> uint64(shift)) & _LANE) <= t else z


@njit(inline="always")
def _at(k, e, t, v, z):  # type: ignore[no-untyped-def]
    """The factor of element e alone (a draw's first and last elements, outside whole words)."""
    return _pick(_word(k, e >> 2), 16 * (e & 3), t, v, z)


@_jit(void(uint64[::1], uint64, int64, uint16[::1], boolean[:, ::1]))
def keep(keys, draw, lo, thr, out):  # type: ignore[no-untyped-def]
    """out[c, i] = whether element lo + i of member c's draw is kept (its lane <= thr[c])."""
    C, n = out.shape
    hi, wa, wb = _span(lo, n)
    for c in range(C):
        k, t = _key(keys, draw, c), uint64(thr[c])
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
    hi, wa, wb = _span(lo, n)
    for c in range(C):
        k, t, v, z = _member(keys, draw, thr, values, c)
        o = out[c]
        for e in range(lo, min(4 * wa, hi)):
            o[e - lo] = _at(k, e, t, v, z)
        ob = o[4 * wa - lo:]
        for j in range(wb - wa):
            x = _word(k, wa + j)
            ob[4 * j] = _pick(x, 0, t, v, z)
            ob[4 * j + 1] = _pick(x, 16, t, v, z)
            ob[4 * j + 2] = _pick(x, 32, t, v, z)
            ob[4 * j + 3] = _pick(x, 48, t, v, z)
        for e in range(max(4 * wb, 4 * wa), hi):
            o[e - lo] = _at(k, e, t, v, z)


factor = _jit(*[void(uint64[::1], uint64, int64, uint16[::1], f[::1], f[:, ::1]) for f in (float32, float64)])(_factor)


def _scaled(keys, draw, lo, thr, values, n, x, xs, out, os):  # type: ignore[no-untyped-def]
    """Member c's out[c*os : c*os + n] = x[c*xs : c*xs + n] * its factor (values[c] where element
    lo + i of its draw is kept, else 0): inverted dropout, and with the same draw again its
    backward (the gradient times the factor), with no factor held in memory between them."""
    hi, wa, wb = _span(lo, n)
    for c in range(keys.shape[0]):
        k, t, v, z = _member(keys, draw, thr, values, c)
        xc, oc = x[c * xs: c * xs + n], out[c * os: c * os + n]
        for e in range(lo, min(4 * wa, hi)):
            oc[e - lo] = xc[e - lo] * _at(k, e, t, v, z)
        xb, ob = xc[4 * wa - lo:], oc[4 * wa - lo:]
        for j in range(wb - wa):
            w = _word(k, wa + j)
            ob[4 * j] = xb[4 * j] * _pick(w, 0, t, v, z)
            ob[4 * j + 1] = xb[4 * j + 1] * _pick(w, 16, t, v, z)
            ob[4 * j + 2] = xb[4 * j + 2] * _pick(w, 32, t, v, z)
            ob[4 * j + 3] = xb[4 * j + 3] * _pick(w, 48, t, v, z)
        for e in range(max(4 * wb, 4 * wa), hi):
            oc[e - lo] = xc[e - lo] * _at(k, e, t, v, z)


_FLOATS = (float32, float64)
scaled = _jit(*[void(uint64[::1], uint64, int64, uint16[::1], f[::1], int64, f[::1], int64, f[::1], int64) for f in _FLOATS])(_scaled)
