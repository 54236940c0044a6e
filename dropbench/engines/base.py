"""What every engine takes and gives back, so a batched engine can stand beside the reference."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from dropbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig

# MSEs in the target's standardised units (as trained), RMSEs in its original units (data=uci;
# the same numbers elsewhere). test_mc_*: the mean of eval.mc_samples stochastic passes (empty
# without MC); test_ll: the Gaussian test log-likelihood with precision eval.tau (empty without).
# train_loss: the training objective (MSE + loss-slot penalties) each step measured before its
# update: at full batch the epoch's one step's; with batch_size, the rows-weighted mean of the
# epoch's batches' objectives (engines/loop.py, where every rule of the training loop is kept).
# learned_p: the learned dropout rate of each layer (concrete dropout), first hidden layer first,
# space separated at full precision (text, not a metric; empty for runs that learn none).
# val_mse: the eval-mode MSE on the validation rows a loop-slot regularizer holds out of the
# training rows (early stopping; empty for runs without them). Columns are only ever appended.
CURVE_COLUMNS = ("epoch", "train_mse", "test_mse", "train_loss",
                 "train_rmse", "test_rmse", "test_mc_mse", "test_mc_rmse", "test_ll", "learned_p", "val_mse")
TEXT_COLUMNS = ("learned_p",)
CURVE_REQUIRED = CURVE_COLUMNS[:4]  # every curves.csv has these (folders written before the others)
SCORE_COLUMNS = CURVE_COLUMNS[4:]  # RunResult.scores; RunResult.curve holds CURVE_REQUIRED
@dataclass
class RunResult:
    """One finished run: its eval curve and how it ended."""

    cfg: "RunConfig"
    curve: list[tuple[int, float, float, float]] = field(default_factory=list)  # CURVE_REQUIRED
    scores: list[tuple] = field(default_factory=list)  # SCORE_COLUMNS of each curve row (add_eval)
    fit: list[tuple[float, float]] = field(default_factory=list)  # (x, y_pred) on FIT_POINTS, 1-D data only
    status: str = "ok"  # ok | failed
    reason: str = ""
    seconds: float = 0.0
    # A loop-slot regularizer's decisions (engines/loop.py): the curve row the run is reported at
    # (None: the last; its final_* are that row's, as if its weights were restored there) and the
    # epoch it stopped at (None: it trained every epoch).
    kept: int | None = None
    stopped: int | None = None

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    def add_eval(self, epoch: int, train_mse: float, test_mse: float, train_loss: float, y_std: float,
                 mc_mse: float | None = None, ll: float | None = None, learned: Sequence[float] | None = None,
                 val_mse: float | None = None) -> None:
        """Record one evaluation: the RMSEs are sqrt(MSE) in the target's original units."""
        row = curve_row(epoch, train_mse, test_mse, train_loss, y_std, mc_mse, ll, learned, val_mse)
        self.curve.append(row[:4])
        self.scores.append(row[4:])

    def column(self, name: str) -> list[Any]:
        """One curve column's values, oldest evaluation first."""
        i = CURVE_COLUMNS.index(name)
        return [row[i] for row in self.rows()]

    def rows(self) -> list[tuple]:
        """The curve as CURVE_COLUMNS rows (scores not recorded are None)."""
        blank = (None,) * len(SCORE_COLUMNS)
        return [(*c, *(self.scores[i] if i < len(self.scores) else blank)) for i, c in enumerate(self.curve)]

    def summary(self) -> dict[str, float | int | None]:
        """The final_<column> of the curve row the run is reported at (the last, or the one a
        loop-slot regularizer kept), best test MSE and its epoch (over every evaluation), and the
        epochs a loop-slot regularizer stopped at and kept (None without one). A metric the run
        does not compute (no eval.mc_samples, no eval.tau, no validation rows) is None; one it
        computes but never reached (no finite evaluation) is NaN."""
        nan = float("nan")
        rows = self.rows()
        at = rows[self.kept if self.kept is not None and self.kept < len(rows) else -1] if rows else ()
        last = dict(zip(CURVE_COLUMNS, at))
        wanted = computed(self.cfg)
        out: dict[str, float | int | None] = {
            f"final_{c}": nan if wanted[c] and last.get(c) is None else last.get(c) if wanted[c] else None
            for c in CURVE_COLUMNS[1:] if c != "train_loss" and c not in TEXT_COLUMNS
        }
        out.update({f"final_{c}": last.get(c) for c in TEXT_COLUMNS})
        stops = {"stopped_epoch": self.stopped, "kept_epoch": last.get("epoch") if self.kept is not None else None}
        if not self.curve:
            return {**out, "best_test_mse": nan, "best_epoch": -1, **stops}
        best = min(self.curve, key=lambda r: (r[2] != r[2], r[2]))  # NaN sorts last
        return {**out, "best_test_mse": best[2], "best_epoch": best[0], **stops}


def computed(cfg: "RunConfig") -> dict[str, bool]:
    """Which curve columns a run fills: MC ones with eval.mc_samples > 0, test_ll with eval.tau,
    val_mse with validation rows (a loop-slot regularizer's hold-out)."""
    ev = getattr(cfg, "eval", None)
    mc = bool(ev is not None and ev.mc_samples > 0)
    ll = bool(ev is not None and ev.tau is not None)
    val = bool(getattr(cfg, "reg", None) is not None and _holds_out(cfg))
    return {c: (mc if "_mc_" in c else ll if c == "test_ll" else val if c == "val_mse" else True) for c in CURVE_COLUMNS}


def _holds_out(cfg: "RunConfig") -> bool:
    from dropbench import regs

    return regs.holdout_fraction(cfg.reg) > 0


def curve_row(epoch: int, train_mse: float, test_mse: float, train_loss: float, y_std: float,
              mc_mse: float | None = None, ll: float | None = None, learned: Sequence[float] | None = None,
              val_mse: float | None = None) -> tuple:
    """One curve row (CURVE_COLUMNS): the RMSEs are sqrt(MSE) in the target's original units."""
    to_rmse = lambda m: math.sqrt(m) * y_std if m == m and m >= 0 else float("nan")  # noqa: E731
    mc_rmse = None if mc_mse is None else to_rmse(mc_mse)
    text = None if not learned else " ".join(repr(float(v)) for v in learned)
    return (epoch, train_mse, test_mse, train_loss, to_rmse(train_mse), to_rmse(test_mse), mc_mse, mc_rmse, ll, text, val_mse)


# ---- evaluation beyond eval mode: MC dropout and the test log-likelihood ----------------------
# Passes are computed in blocks: one forward over a block's passes stacked along the rows (pass
# major), so each stochastic layer draws a block's masks in one call. A block's size depends only
# on the run's shapes (never on T, the chunk or the device), so a run draws the same masks alone
# or in any company; the last block is computed whole and its passes past T are left out.
MC_BLOCK_ELEMENTS = 2**15  # widest activation of a block, per run (measured: 2**15 at ~9 ns per mask element, 2**17 at 17 ns, cache-bound)


def mc_active(reg: Any) -> bool:
    """Whether a regularizer stays active in MC evaluation: the dropout family (its `mc`
    attribute, where it declares one, decides)."""
    return bool(getattr(reg, "mc", reg.shares_p))


def mc_regs(cfg: "RunConfig") -> list[str]:
    """The selected regularizers that act in MC evaluation (none: every pass is the eval-mode one)."""
    from dropbench import regs

    return [r.name for r, _ in regs.active(cfg.reg) if r.slot in MC_SLOTS and mc_active(r)]


MC_SLOTS = ("input", "weight", "activation", "residual")  # where a forward pass draws


def mc_block(cfg: "RunConfig", n_test: int, n_in: int) -> int:
    """Passes per block: a weight-slot regularizer (DropConnect) draws one mask per forward, so
    its passes go one at a time; otherwise as many as fit MC_BLOCK_ELEMENTS."""
    from dropbench import regs

    if any(regs.REGISTRY[n].slot == "weight" for n in mc_regs(cfg)):
        return 1
    return max(1, MC_BLOCK_ELEMENTS // max(1, n_test * max(n_in, cfg.model.hidden)))


class MCStats:
    """Streaming statistics of stochastic passes for C runs at once: the mean prediction and the
    log-likelihood's log-sum-exp, in float64, one block of passes at a time (T = 10,000 passes
    need not be held).

    y: [C, n] test targets (standardised); T, tau, y_std: per run (tau None: no log-likelihood).
    exp and log go member by member (engines/memberwise.py), as a run alone computes them.
    """

    def __init__(self, y: "torch.Tensor", T: Sequence[int], tau: Sequence[float | None], y_std: Sequence[float]) -> None:
        import torch

        self.y = y.to(torch.float64)
        col = lambda v: torch.tensor(v, dtype=torch.float64, device=y.device).view(-1, 1, 1)  # noqa: E731
        self.T = list(T)
        self.T_col = col([float(t) for t in T])
        self.tau = list(tau)
        # -tau/2 * (y_std * (y - yhat))**2: the squared error in original units
        self.k = col([-0.5 * (t if t is not None else 1.0) * s * s for t, s in zip(tau, y_std)])
        self.want_ll = any(t is not None for t in tau)
        self.total = torch.zeros_like(self.y)
        self.m: "torch.Tensor | None" = None  # running max of the log terms, [C, n]
        self.s: "torch.Tensor | None" = None  # running sum of exp(term - m)

    def add(self, pred: "torch.Tensor", start: int) -> None:
        """pred: [C, B, n], passes start .. start+B-1 (those at or past a run's T are left out)."""
        import torch

        from dropbench.engines.memberwise import exp

        p = pred.to(torch.float64)
        idx = torch.arange(start, start + p.shape[1], dtype=torch.float64, device=p.device).view(1, -1, 1)
        valid = idx < self.T_col  # [C, B, 1]
        self.total += torch.where(valid, p, 0.0).sum(1)
        if not self.want_ll:
            return
        e = torch.where(valid, self.k * (self.y.unsqueeze(1) - p).square(), -math.inf)
        bm = e.amax(1)
        if self.m is None:
            self.m, self.s = bm, exp(e - bm.unsqueeze(1)).sum(1)
            return
        m = torch.maximum(self.m, bm)
        self.s = self.s * exp(self.m - m) + exp(e - m.unsqueeze(1)).sum(1)
        self.m = m

    def mse(self) -> list[float]:
        """Each run's MSE of the mean of its passes (standardised units)."""
        mean = self.total / self.T_col.view(-1, 1)
        return (self.y - mean).square().mean(1).tolist()

    def ll(self) -> list[float | None]:
        """Each run's mean over test points of logsumexp_t(-tau/2 (y - yhat_t)^2) - log T
        - log(2 pi)/2 + log(tau)/2, in original units (PROTOCOL.md); None without tau."""
        if self.m is None:
            return [None] * len(self.T)
        from dropbench.engines.memberwise import log

        lse = (self.m + log(self.s)).mean(1).tolist()
        return [None if tau is None or T < 1 else v - math.log(T) - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau)
                for v, T, tau in zip(lse, self.T, self.tau)]


def failed_results(cfgs: Sequence["RunConfig"], error: Exception) -> list[RunResult]:
    """A run that raised is recorded, not lost: the sweep goes on without it."""
    reason = f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]
    return [RunResult(c, status="failed", reason=reason) for c in cfgs]


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


# The training loop's rules and helpers live in engines/loop.py; their old home still answers.
_IN_LOOP = frozenset({"FIT_POINTS", "fit_grid", "SHUFFLE_DOMAIN", "shuffle_seed", "shuffle_generator", "batch_slices",
                      "steps_per_epoch", "eval_epochs", "diverged_reason", "settle"})


def __getattr__(name: str) -> Any:
    """`from dropbench.engines.base import settle` etc.: loop.py imports this module, so the
    names are looked up there on first use rather than imported at the top (a cycle)."""
    if name in _IN_LOOP:
        from dropbench.engines import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
