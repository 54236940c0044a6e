"""What every engine takes and gives back, so a batched engine can stand beside the reference."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

from dropbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig

CURVE_COLUMNS = ("epoch", "train_mse", "test_mse", "train_loss")
FIT_POINTS = 200


def fit_grid(x_train: "torch.Tensor") -> "torch.Tensor":
    """Where a 1-D model's fitted curve is drawn: FIT_POINTS over the training x range, [n, 1],
    in x_train's dtype and on its device (the model's). The ends stay tensors: no copy to the
    host, and the same values float() ends would give."""
    import torch

    lo, hi = x_train.min(), x_train.max()
    return torch.linspace(lo, hi, FIT_POINTS, dtype=x_train.dtype, device=x_train.device).unsqueeze(1)


@dataclass
class RunResult:
    """One finished run: its eval curve and how it ended."""

    cfg: "RunConfig"
    curve: list[tuple[int, float, float, float]] = field(default_factory=list)  # CURVE_COLUMNS
    fit: list[tuple[float, float]] = field(default_factory=list)  # (x, y_pred) on FIT_POINTS, 1-D data only
    status: str = "ok"  # ok | failed
    reason: str = ""
    seconds: float = 0.0

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    def summary(self) -> dict[str, float | int]:
        if not self.curve:
            nan = float("nan")
            return {"final_train_mse": nan, "final_test_mse": nan, "best_test_mse": nan, "best_epoch": -1}
        epoch, train, test, _ = self.curve[-1]
        best = min(self.curve, key=lambda r: (r[2] != r[2], r[2]))  # NaN sorts last
        return {"final_train_mse": train, "final_test_mse": test, "best_test_mse": best[2], "best_epoch": best[0]}


def eval_epochs(epochs: int, eval_every: int) -> list[int]:
    """Epochs (1-based, steps completed) at which a run is evaluated: every eval_every and the last."""
    marks = list(range(eval_every, epochs + 1, eval_every))
    if not marks or marks[-1] != epochs:
        marks.append(epochs)
    return marks


def failed_results(cfgs: Sequence["RunConfig"], error: Exception) -> list[RunResult]:
    """A run that raised is recorded, not lost: the sweep goes on without it."""
    reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]
    return [RunResult(c, status="failed", reason=reason) for c in cfgs]


def diverged_reason(epoch: int, loss: float | str) -> str:
    """Why a run failed: `loss` is the non-finite training loss, or a phrase naming what was."""
    what = f"training loss {loss}" if isinstance(loss, float) else loss
    return f"diverged at epoch {epoch} ({what}); lower optim.lr or the regularizer strength"


def settle(result: RunResult) -> RunResult:
    """The last check every engine makes on a finished run: an evaluation that is not finite
    means the run diverged, even when no training loss showed it (the last step's update, whose
    loss was measured before it). Such a run fails; its curve keeps the finite evaluations before
    that one. A failed run has no fitted curve: its weights are not a model of anything."""
    for i, (epoch, train, test, _) in enumerate(result.curve):
        if not (math.isfinite(train) and math.isfinite(test)):
            result.curve = result.curve[:i]
            result.status = "failed"
            result.reason = diverged_reason(epoch, f"evaluated after it: train MSE {train}, test MSE {test}")
            break
    if result.status == "ok" and not all(math.isfinite(y) for _, y in result.fit):
        result.status, result.reason = "failed", diverged_reason(result.cfg.epochs, "fitted curve is not finite")
    if result.status != "ok":
        result.fit = []
    return result


@contextmanager
def one_intraop_thread() -> Iterator[None]:
    """Every run computes with one intra-op thread, whatever the machine's core count: the same
    kernels, so the same bits (a reduction split over threads, such as the L1 sum, rounds
    differently), and no threads spinning over ops too small to share. Parallelism comes from
    running different runs at once."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Engine(Protocol):
    """Trains runs and yields each RunResult as soon as it is done (any order)."""

    name: str

    def train(self, cfgs: Sequence["RunConfig"]) -> Iterator[RunResult]: ...


def resolve_device(device: str) -> "torch.device":
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA GPU is visible to torch here; use device=cpu or device=auto")
    return torch.device(device)


def get_engine(name: str, workers: int | None = None) -> Engine:
    """The engine called `name`; `workers` threads for the batched one (default: one per core)."""
    if name == "torch":
        from dropbench.engines.torch_engine import TorchEngine

        return TorchEngine()
    if name == "batched":
        from dropbench.engines.batched import BatchedEngine

        return BatchedEngine(workers)
    raise UserError(f"unknown engine={name}: choose from batched, torch")
