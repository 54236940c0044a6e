"""The fast mask stream (`masks: fast`): counter-based Bernoulli masks, the same on every CPU.

Each mask element is a pure function of the run's seed and of where the draw falls: the kind of
forward (a training step or an MC evaluation), when (the step number), which draw of that forward
(its k-th Bernoulli layer, in the order a forward meets them), the MC pass and the element. Never
of the chunk, the worker, the MC block size or T, because nothing is drawn in sequence: element e
of draw D of run r is

    word  = mix64(key(r, D) + (e // 4) * GAMMA)          (SplitMix64's output function)
    lane  = 16-bit lane e % 4 of word (little-endian)
    keep  = lane < levels, levels = round(keep probability * 2**16), clamped to 1..2**16

so the keep probability is represented to 16 bits (effective_keep gives the one in force) and
the whole computation is unsigned 64-bit integer arithmetic in numpy, exact on every CPU. Both
engines call CounterStream.bernoulli: the reference engine with one member, the batched engine
with a chunk's, vectorised across them (no per-member Python work). Drawing costs about a tenth
of a float64 torch.rand from each run's generator (docs/benchmarks.md).

Regularizers whose masks are Bernoulli (Regularizer.counter_masks: dropout, input_dropout,
vanilla_dropout, dropconnect, alpha_dropout) draw from it under `masks: fast`, and in MC
evaluation under `eval.mc_masks: fast` (the default); noise of other laws (Gaussian dropout,
DropPath, concrete dropout) stays on the run's torch generator.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

KEEP_BITS = 16
LEVELS = 1 << KEEP_BITS
GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
DOMAIN = b"dropbench.masks:"
KINDS = {"train": 1, "mc": 2}


def levels_of(keep: np.ndarray) -> np.ndarray:
    """Keep probabilities in units of 2**-16, as the stream compares them: rounded to nearest
    (ties to even), clamped to 1 .. 2**16 (p = 1 - 2**-16 at most: p < 1 always keeps something)."""
    return np.clip(np.rint(np.asarray(keep, dtype=np.float64) * LEVELS), 1, LEVELS).astype(np.int64)


def keep_levels(keep: float) -> int:
    return int(levels_of(np.array([keep]))[0])


def effective_keep(keep: float) -> float:
    """The keep probability in force for a requested one (exact in double)."""
    return keep_levels(keep) / LEVELS


def effective_p(p: float) -> float:
    return 1.0 - effective_keep(1.0 - p)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Stafford's variant 13), in place on uint64 arrays."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


_U64 = 2**64 - 1


def _mix_int(v: int) -> int:
    """_mix of one word, in Python's integers (a numpy scalar's round trip costs ten times more)."""
    x = v & _U64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _U64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def run_key(seed: int) -> int:
    """A run's 64-bit key: from its seed alone, through sha256, so it is no other stream's seed."""
    return int.from_bytes(hashlib.sha256(DOMAIN + str(seed).encode()).digest()[:8], "little")


def draw_id(kind: str, when: int, k: int) -> int:
    """A draw's position: the forward's kind, when (steps taken), and its k-th Bernoulli draw."""
    return _mix_int(_mix_int(KINDS[kind] << 56 ^ when) + k * int(GAMMA))


def _counter_words(w0: int, w1: int) -> np.ndarray:
    """Words w0 .. w1 - 1 times GAMMA (read only)."""
    words = np.arange(w0, w1, dtype=np.uint64)
    words *= GAMMA
    words.flags.writeable = False
    return words


_counter_table = lru_cache(maxsize=64)(_counter_words)


def _counters(w0: int, w1: int) -> np.ndarray:
    """_counter_words; a training draw's (from word 0) are reused step to step."""
    return _counter_table(w0, w1) if w0 == 0 else _counter_words(w0, w1)


class CounterStream:
    """The fast stream of C runs (seeds), drawn together.

    The engine says where each forward falls (start_step before a training step's forward,
    start_mc before a block of MC passes); each Bernoulli draw of that forward then takes the
    next draw index k. A draw covers `passes` MC passes (1 in training): its elements are the
    passes' elements in order, so pass t's elements are t * P .. t * P + P - 1 whatever the block.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.keys = np.array([run_key(s) for s in seeds], dtype=np.uint64).reshape(-1, 1)
        self._flat_keys = self.keys.ravel()  # as the compiled kernels take them
        self.steps = 0  # training steps started
        self._kind, self._when, self._k = "train", 0, 0
        self._first, self._passes = 0, 1
        self._words: dict[int, np.ndarray] = {}  # scratch, by word count: consumed within a draw
        self._kept: dict[int, np.ndarray] = {}

    def window(self, lo: int, hi: int) -> "CounterStream":
        """Runs lo .. hi - 1 of this stream, at the point it has reached: each draws what it
        draws here (a draw's elements are a function of the run's key alone)."""
        import copy

        w = copy.copy(self)
        w.keys = self.keys[lo:hi]
        w._flat_keys = w.keys.ravel()
        w._words, w._kept = {}, {}
        return w

    @property
    def in_mc(self) -> bool:
        return self._kind == "mc"

    def start_step(self) -> None:
        """A training step's forward begins."""
        self.steps += 1
        self._kind, self._when, self._k, self._first, self._passes = "train", self.steps, 0, 0, 1

    def start_mc(self, first: int, passes: int) -> None:
        """A forward over MC passes first .. first + passes - 1 begins (after `steps` steps)."""
        self._kind, self._when, self._k, self._first, self._passes = "mc", self.steps, 0, first, passes

    def _next_draw(self, n: int) -> tuple[int, int, int]:
        """The next draw of n elements: its id, and the elements it covers, lo .. hi - 1 (its
        passes' elements, in order). Member c's key for it is mix64(keys[c] ^ id)."""
        P, rem = divmod(n, self._passes)
        if rem:
            raise ValueError(f"a draw of {n} elements does not split into {self._passes} passes")
        d = draw_id(self._kind, self._when, self._k)
        self._k += 1
        return d, self._first * P, (self._first + self._passes) * P

    def lanes(self, n: int) -> np.ndarray:
        """The next draw's 16-bit lanes, [C, passes * n // passes] as uint16 (n elements in all)."""
        d, lo, hi = self._next_draw(n)
        keys = _mix(self.keys ^ np.uint64(d))  # [C, 1]: this draw's key for each run
        w0, w1 = lo // 4, -(-hi // 4)
        x = self._words.get(w1 - w0)
        if x is None:
            x = self._words[w1 - w0] = np.empty((len(self.keys), w1 - w0), dtype=np.uint64)
        _mix(np.add(keys, _counters(w0, w1), out=x))  # [C, W]
        lanes = x.astype("<u8", copy=False).view("<u2")
        return lanes[:, lo - 4 * w0: hi - 4 * w0]

    def bernoulli(self, levels: np.ndarray, shape: Sequence[int], values: np.ndarray | None = None) -> "torch.Tensor":
        """[C, *shape]: each run's keep mask for the next draw (levels: [C] keep_levels), as bool,
        or with `values` ([C], a float dtype) each run's value where kept and 0 elsewhere (a
        dropout factor, mask / keep, in one pass)."""
        import torch

        n = int(np.prod(shape)) if len(shape) else 1
        kernels = compiled()
        if kernels is not None:  # the same bits, in one pass (mask_kernels.py)
            d, lo, _ = self._next_draw(n)
            out = np.empty((len(self.keys), n), dtype=bool if values is None else values.dtype)
            if values is None:
                kernels.keep(self._flat_keys, d, lo, _thresholds(levels), out)
            else:
                kernels.factor(self._flat_keys, d, lo, _thresholds(levels), np.ascontiguousarray(values), out)
            return torch.from_numpy(out).view(len(self.keys), *shape)
        lanes = self.lanes(n)  # valid until the next draw
        thr = _thresholds(levels).reshape(-1, 1)  # lane <= thr: lane < levels
        if values is None:
            return torch.from_numpy(lanes <= thr).view(len(self.keys), *shape)
        kept = self._kept.get(n)
        if kept is None:
            kept = self._kept[n] = np.empty((len(self.keys), n), dtype=bool)
        np.less_equal(lanes, thr, out=kept)
        out = np.multiply(kept, values.reshape(-1, 1), dtype=values.dtype)  # value where kept, else 0
        return torch.from_numpy(out).view(len(self.keys), *shape)

    def scaled(self, levels: np.ndarray, values: np.ndarray, n: int, x: np.ndarray, xs: int, out: np.ndarray,
               os: int) -> tuple[int, int] | None:
        """Inverted dropout in one pass where the compiled kernels are here: member c's elements
        out[c*os : c*os + n] = x[c*xs : c*xs + n] * its factor for the next draw of n elements
        (values[c] where kept, else 0, as bernoulli(levels, ..., values) makes it). x and out:
        1-D, each member contiguous. Returns the draw (its id and first element), which
        `rescaled` multiplies by again; None, drawing nothing, without the kernels (the caller
        multiplies bernoulli's factor)."""
        kernels = compiled()
        if kernels is None:
            return None
        d, lo, _ = self._next_draw(n)
        kernels.scaled(self._flat_keys, d, lo, _thresholds(levels), np.ascontiguousarray(values), n, x, xs, out, os)
        return d, lo

    def rescaled(self, draw: tuple[int, int], levels: np.ndarray, values: np.ndarray, n: int, x: np.ndarray, xs: int,
                 out: np.ndarray, os: int) -> None:
        """`scaled` for a draw it made earlier, drawing nothing new: inverted dropout's backward
        multiplies the gradient by the forward's factor, the same bits as the factor held in memory."""
        d, lo = draw
        compiled().scaled(self._flat_keys, d, lo, _thresholds(levels), np.ascontiguousarray(values), n, x, xs, out, os)


def _thresholds(levels: np.ndarray) -> np.ndarray:
    """Keep where a lane <= levels - 1 (levels 1 .. 2**16: the threshold fits 16 bits)."""
    return (np.asarray(levels, dtype=np.int64) - 1).astype(np.uint16)


_compiled: list[Any] = []


def compiled() -> Any | None:
    """The compiled kernels (dropbench/mask_kernels.py) where numba is installed and compiles
    them here, else None: the numpy code computes the same bits, slower. Loaded once."""
    if not _compiled:
        with _compile_lock:
            if not _compiled:
                try:
                    from dropbench import mask_kernels
                except Exception:  # numba missing, or built for another numpy: the numpy path
                    mask_kernels = None  # type: ignore[assignment]
                _compiled.append(mask_kernels)
    return _compiled[0]


_compile_lock = threading.Lock()


# ---- the reference engine's run: its stream, for the torch forms of the regularizers ----------
_local = threading.local()


@contextmanager
def using(stream: CounterStream, train: bool, mc: bool) -> Iterator[None]:
    """A reference run on this thread: its stream, and whether training's (masks: fast) and the
    MC passes' (eval.mc_masks: fast) Bernoulli masks come from it rather than torch's generator."""
    old = getattr(_local, "state", None)
    _local.state = (stream, train, mc)
    try:
        yield
    finally:
        _local.state = old


def stream() -> CounterStream | None:
    """The reference run's stream on this thread (None outside a run)."""
    state = getattr(_local, "state", None)
    return None if state is None else state[0]


def training_fast() -> bool:
    """Whether this thread's reference run draws its training masks from the fast stream."""
    state = getattr(_local, "state", None)
    return state is not None and state[1]


def current() -> CounterStream | None:
    """The stream a torch form draws its next mask from, or None for torch's generator."""
    state = getattr(_local, "state", None)
    if state is None:
        return None
    s, train, mc = state
    return s if (mc if s.in_mc else train) else None


def torch_mask(shape: Sequence[int], keep: float, dtype: "torch.dtype", device: Any,
               value: float | None = None) -> "torch.Tensor | None":
    """A torch form's mask for one draw under the fast stream, in `dtype` on `device`: 1 where
    kept (with `value`: that value, cast to `dtype`), 0 elsewhere; None where the run draws from
    torch's generator (its torch.nn form then runs)."""
    s = current()
    if s is None:
        return None
    values = None if value is None else np.array([value], dtype=numpy_dtype(dtype))
    m = s.bernoulli(np.array([keep_levels(keep)]), tuple(shape), values)[0]
    return m.to(device=device) if value is not None else m.to(device=device, dtype=dtype)


def numpy_dtype(dtype: "torch.dtype") -> Any:
    import torch

    return {torch.float32: np.float32, torch.float64: np.float64}[dtype]


def inverse_keep(keep: float, dtype: "torch.dtype") -> float:
    """1 / keep as a dropout factor holds it: keep cast to `dtype`, divided there (mask / keep)."""
    t = numpy_dtype(dtype)
    return t(1) / t(keep)


def keep_tensor(keep: float, dtype: "torch.dtype", device: Any) -> "torch.Tensor":
    """A keep probability as a torch form divides by it: computed in double, then cast, as the
    batched pieces' per-member columns (regs.base.keep64)."""
    import torch

    return torch.tensor(keep, dtype=torch.float64).to(device=device, dtype=dtype)
