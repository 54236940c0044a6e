"""The training loop both engines run, and every rule it keeps, in one place.

An engine trains `members` runs at once (the reference engine one, the batched engine the real
members of a chunk) and hands `train` what only it knows how to do:

    step(rows, objective)  one optimizer update of every member, on rows a:b of this epoch's
                           order (rows=(a, b)) or on every row in order (rows=None); returns each
                           member's objective measured before the update. The only place an
                           optimizer steps. With objective=False (an epoch not evaluated) an
                           engine may measure the MSE alone, without the loss-slot penalties.
    shuffle()              draw this epoch's order of the training rows: each member's
                           torch.randperm(n) from its own shuffle_generator (mini-batches only)
    evaluate()             each member's (train MSE, test MSE, MC test MSE, test log-likelihood[,
                           learned values, validation MSE]); the validation MSE on the rows a
                           loop-slot regularizer holds out (None without them)
    fit()                  each member's fitted curve: (x, prediction) on fit_grid(x_train), in
                           eval mode, leaving training as it was (it may be asked mid-training)

The rules:
  epochs      1..cfg.epochs; evaluated after eval_epochs(epochs, eval_every): every
              eval_every-th epoch and the last.
  batches     batch_size null: one step per epoch on the training rows in order, nothing shuffled.
              batch_size B: shuffle() before the epoch's first step, then one step per slice of
              batch_slices(n, B), ceil(n/B) consecutive slices (the last may be smaller).
  train_loss  an epoch's is the rows-weighted mean of its steps' objectives, sum(rows * loss) in
              float64 / n (at full batch the one step's); computed on evaluated epochs, the only
              ones that record it.
  divergence  a member whose step objective (or recorded train_loss) is not finite fails there,
              with diverged_reason(epoch, value); it is never evaluated again and the others go
              on (a chunk still computes it: its numbers are ignored). No member left: training
              stops.
  evals       on an evaluated epoch, each member still training gets RunResult.add_eval.
  stopping    a member with a loop-slot regularizer that holds out validation rows (early
              stopping) is watched after each of its evaluations: the regularizer's watch(its
              validation MSEs so far) names the evaluation the run is reported at (RunResult.kept:
              its final_* are that row's, as if the weights were restored there) and whether it
              stops. A stopped member is ok, records stopped=epoch, is never evaluated again, and
              the others go on: as with divergence, a chunk still computes it and ignores its
              numbers. No member left: training stops.
  fit         on 1-D data (the engine passes fit), after training, for the members still ok; for a
              watched member, when the evaluation it is reported at is the newest (the curve of
              the weights it is reported with).
  seconds     wall time since t0 (the engine's start), shared equally by the members.
  cancel      set (Ctrl-C in the main thread): Cancelled at the start of the next epoch.
  settle      the last check of every run (below): a non-finite evaluation fails it too.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dropbench.columns import CURVE_COLUMNS
from dropbench.engines.result import RunResult

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig

Rows = tuple[int, int] | None  # a step's slice of the epoch's order; None: every row, in order
Step = Callable[[Rows, bool], Sequence[float]]  # (rows, objective) -> each member's objective
# train MSE, test MSE, MC test MSE, test LL[, learned values, validation MSE]
Evaluation = tuple[float | Sequence[float] | None, ...]
Fit = Callable[[], Sequence[list[tuple[float, float]]]]  # each member's (x, prediction) pairs


class Cancelled(BaseException):
    """A worker stops training (the sweep was stopped): not an error of its runs (they are not stored)."""


def train(cfgs: Sequence["RunConfig"], n: int, y_std: Sequence[float], step: Step,
          evaluate: Callable[[], Sequence[Evaluation]], shuffle: Callable[[], None] | None = None,
          fit: Fit | None = None, cancel: threading.Event | None = None, t0: float | None = None,
          clock: Callable[[], float] = time.perf_counter) -> list[RunResult]:
    """Train the members (one per cfg; they share epochs, eval_every and batch_size) on n rows
    by the rules above; y_std: each member's target SD (its RMSEs in original units). step,
    evaluate and fit answer for these members alone, in cfgs' order. `clock` reads the seconds
    (t0 is on it); tests pass their own."""
    t0 = clock() if t0 is None else t0
    cfg = cfgs[0]
    marks = set(eval_epochs(cfg.epochs, cfg.eval_every))
    slices = batch_slices(n, cfg.batch_size)
    if slices is not None and shuffle is None:
        raise TypeError("batch_size needs the engine's shuffle")
    results = [RunResult(c) for c in cfgs]
    alive = [True] * len(cfgs)
    watchers = [watcher(c) for c in cfgs]
    fitted = [False] * len(cfgs)  # watched members whose curve was drawn at their kept evaluation

    def check(losses: Sequence[float], epoch: int) -> bool:
        """Fail each member still training whose loss is not finite; False once none is left."""
        for i, r in enumerate(results):
            if alive[i] and not math.isfinite(losses[i]):
                alive[i] = False
                r.status, r.reason = "failed", diverged_reason(epoch, losses[i])
        return any(alive)

    for epoch in range(1, cfg.epochs + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled
        record = epoch in marks
        if slices is None:
            losses = step(None, record)
        else:
            shuffle()
            total = [0.0] * len(cfgs)
            for a, b in slices:
                losses = step((a, b), record)
                if not check(losses, epoch):
                    break
                if record:
                    total = [t + v * (b - a) for t, v in zip(total, losses)]
            losses = [t / n for t in total]
        if not check(losses, epoch):
            break
        if record:
            for i, (tr, te, *more) in enumerate(evaluate()):  # more: mc, ll[, learned, val]
                if alive[i]:
                    results[i].add_eval(epoch, tr, te, losses[i], y_std[i], *more)
            moved = []
            for i, w in enumerate(watchers):
                if w is None or not alive[i]:
                    continue
                r = results[i]
                keep, stop = w[0].watch(r.column("val_mse"), w[1])
                newest = len(r.curve) - 1
                keep = newest if keep is None else keep
                if keep != r.kept:
                    if keep != newest:
                        raise RuntimeError(f"regularizer {w[0].name} moved the kept evaluation to {keep}, not the newest ({newest})")
                    r.kept = keep
                    moved.append(i)
                if stop:
                    alive[i], r.stopped = False, epoch
            if fit is not None and moved:  # the curve of the weights each is reported with
                curves = fit()
                for i in moved:
                    results[i].fit, fitted[i] = curves[i], True
            if not any(alive):
                break
    if fit is not None and any(a and not f for a, f in zip(alive, fitted)):
        for i, curve in enumerate(fit()):
            if alive[i] and not fitted[i]:
                results[i].fit = curve
    secs = (clock() - t0) / len(cfgs)
    for r in results:
        r.seconds = secs
    return [settle(r) for r in results]


def watcher(cfg: "RunConfig") -> tuple[Any, Any] | None:
    """The loop-slot regularizer that watches a run's validation rows (and its config), or None:
    none is selected, or it holds out no rows (strength 0)."""
    from dropbench import regs

    reg = getattr(cfg, "reg", None)
    if reg is None or regs.holdout_fraction(reg) <= 0:
        return None
    return regs.watcher(reg)


def eval_epochs(epochs: int, eval_every: int) -> list[int]:
    """Epochs (1-based, steps completed) at which a run is evaluated: every eval_every and the last."""
    marks = list(range(eval_every, epochs + 1, eval_every))
    if not marks or marks[-1] != epochs:
        marks.append(epochs)
    return marks


# ---- mini-batches (batch_size) ---------------------------------------------------------------
# The order is torch.randperm(n) drawn at the start of the epoch, before any of its steps, on the
# CPU from the run's shuffle generator: a generator of its own, seeded from the run's seed alone
# (shuffle_seed), never the stream the run's masks come from. So the masks are drawn as at full
# batch (step by step, each step's shapes), a run's batch order is the same whatever its
# regularizer, p or data (runs that differ only in those see the same batches: a paired
# comparison), and both engines draw the same permutations.
SHUFFLE_DOMAIN = b"dropbench.shuffle:"


def shuffle_seed(seed: int) -> int:
    """The seed of a run's shuffle generator: 64 bits of sha256("dropbench.shuffle:<seed>"), so
    it is no other run's model seed (seed + k would be run seed+k's init stream)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(SHUFFLE_DOMAIN + str(seed).encode()).digest()[:8], "little")


def shuffle_generator(seed: int) -> "torch.Generator":
    """A run's shuffle generator (CPU), at the start of training."""
    import torch

    g = torch.Generator()
    g.manual_seed(shuffle_seed(seed))
    return g


def batch_slices(n: int, batch_size: int | None) -> list[tuple[int, int]] | None:
    """The (start, stop) row slices of an epoch's steps; None at full batch (no shuffling)."""
    if batch_size is None:
        return None
    return [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]


def steps_per_epoch(n: int, batch_size: int | None) -> int:
    return 1 if batch_size is None else -(-n // batch_size)


# ---- how a run ends ----------------------------------------------------------------------------
FIT_POINTS = 200


def fit_grid(x_train: "torch.Tensor") -> "torch.Tensor":
    """Where a 1-D model's fitted curve is drawn: FIT_POINTS over the training x range, [n, 1],
    in x_train's dtype and on its device (the model's). The ends stay tensors: no copy to the
    host, and the same values float() ends would give."""
    import torch

    lo, hi = x_train.min(), x_train.max()
    return torch.linspace(lo, hi, FIT_POINTS, dtype=x_train.dtype, device=x_train.device).unsqueeze(1)


def diverged_reason(epoch: int, loss: float | str) -> str:
    """Why a run failed: `loss` is the non-finite training loss, or a phrase naming what was."""
    what = f"training loss {loss}" if isinstance(loss, float) else loss
    return f"diverged at epoch {epoch} ({what}); lower optim.lr or the regularizer strength"


def settle(result: RunResult) -> RunResult:
    """The last check every engine makes on a finished run: an evaluation that is not finite
    means the run diverged, even when no training loss showed it (the last step's update, whose
    loss was measured before it). Such a run fails; its curve keeps the finite evaluations before
    that one. A failed run has no fitted curve: its weights are not a model of anything."""
    for i, row in enumerate(result.rows()):
        epoch, train, test = row[:3]
        extra = [(c, v) for c, v in zip(CURVE_COLUMNS[6:], row[6:])
                 if isinstance(v, float) and not math.isfinite(v)]  # numbers only (learned_p is text)
        if not (math.isfinite(train) and math.isfinite(test)) or extra:
            result.curve, result.scores = result.curve[:i], result.scores[:i]
            result.status = "failed"
            what = f"train MSE {train}, test MSE {test}" + "".join(f", {c} {v}" for c, v in extra)
            result.reason = diverged_reason(epoch, f"evaluated after it: {what}")
            break
    if result.status == "ok" and not all(math.isfinite(y) for _, y in result.fit):
        result.status, result.reason = "failed", diverged_reason(result.cfg.epochs, "fitted curve is not finite")
    if result.status != "ok":
        result.fit = []
    return result
