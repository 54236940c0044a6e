"""Evaluation beyond eval mode, as both engines compute it: MC dropout and the test log-likelihood.

Which regularizers draw in MC evaluation (mc_active, mc_regs), how many passes go in one forward
(mc_block), and the streaming statistics of the passes (MCStats). The engines run the passes
(reference.mc_evaluate, program.Chunk._mc_evaluate); the rules are here, once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from dropbench import regs

if TYPE_CHECKING:
    import torch

    from dropbench.config import RunConfig

MC_SLOTS = ("input", "weight", "activation", "residual")  # where a forward pass draws

# Passes are computed in blocks: one forward over a block's passes stacked along the rows (pass
# major), so each stochastic layer draws a block's masks in one call, and the statistics take a
# block at a time. Under the fast stream (eval.mc_masks: fast; dropbench/masks.py), whose masks
# are keyed by pass, a block holds as many passes as keep its widest activation within
# MC_BLOCK_ELEMENTS per run (in cache: larger blocks stream from memory); otherwise one pass, each
# drawing on from the run's generator. The block is a function of the run's config and data
# shapes alone, never of the machine, the chunk or T. No number depends on it: the masks are keyed
# by pass, and the statistics take passes in groups of MC_GROUP in pass order (MCStats). The last
# block is computed whole and its passes past T are left out.
MC_BLOCK_ELEMENTS = 2**15


def mc_active(reg: Any) -> bool:
    """Whether a regularizer stays active in MC evaluation: the dropout family (its `mc`
    attribute, where it declares one, decides)."""
    return bool(getattr(reg, "mc", reg.shares_p))


def mc_regs(cfg: "RunConfig") -> list[str]:
    """The selected regularizers that act in MC evaluation (none: every pass is the eval-mode one)."""
    return [r.name for r, _ in regs.active(cfg.reg) if r.slot in MC_SLOTS and mc_active(r)]


def mc_block(cfg: "RunConfig", n_test: int, n_in: int) -> int:
    """Passes per block: under the fast stream, where every MC-active regularizer draws from it
    (eval.mc_masks: fast, Regularizer.counter_masks) and none acts on the weights (DropConnect
    draws one weight mask per forward), as many as MC_BLOCK_ELEMENTS allows; one otherwise."""
    active = [regs.REGISTRY[n] for n in mc_regs(cfg)]
    if cfg.eval.mc_masks != "fast" or any(r.slot == "weight" or not getattr(r, "counter_masks", False) for r in active):
        return 1
    block = max(1, MC_BLOCK_ELEMENTS // max(1, n_test * max(n_in, cfg.model.hidden)))
    return block - block % MC_GROUP if block >= MC_GROUP else block  # whole groups: no copies


# An MC forward over a large test set writes and reads back activations of tens of MB per pass
# for a whole chunk ([C, rows, width]), from memory; a window of members at a time keeps each
# within a few MB, near the core. The windows change only the speed: each member's numbers are
# its own in any company (invariance), and windows hold at least two members, as chunks do.
MC_WINDOW_BYTES = 2**22


def mc_windows(members: int, member_bytes: int, most_bytes: int | None = None) -> list[tuple[int, int]]:
    """Members lo .. hi - 1 of each window of an MC forward whose widest activation takes
    member_bytes per member: as few as keep a window within most_bytes, near-equal, each of at
    least two members (a lone member takes other matmul kernels); one window below four members."""
    most = max(2, (MC_WINDOW_BYTES if most_bytes is None else most_bytes) // max(member_bytes, 1))
    k = max(1, min(-(-members // most), members // 2))
    base, extra = divmod(members, k)
    bounds, lo = [], 0
    for i in range(k):
        hi = lo + base + (i < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


MC_GROUP = 8  # passes the statistics take at a time, in pass order, whatever the blocks


class MCStats:
    """Streaming statistics of stochastic passes for C runs at once: the mean prediction and the
    log-likelihood's log-sum-exp, in float64 (T = 10,000 passes need not be held).

    Passes are taken in groups of MC_GROUP (passes 0-7, 8-15, ...) in order, however the
    blocks that `add` receives cut them, so the statistics' order of summation is the same for
    any block size: a block only changes how many passes one forward computes.

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
        self._held: list["torch.Tensor"] = []  # passes received, not yet in a group
        self._first = 0  # the first held pass

    def add(self, pred: "torch.Tensor", start: int) -> None:
        """pred: [C, B, n], passes start .. start+B-1 (those at or past a run's T are left out);
        blocks come in pass order."""
        import torch

        held = sum(h.shape[1] for h in self._held)
        if start != self._first + held:
            raise ValueError(f"passes from {start} after {self._first + held}: blocks come in order")
        self._held.append(pred.to(torch.float64))
        if held + pred.shape[1] >= MC_GROUP:
            self._take(final=False)

    def _take(self, final: bool) -> None:
        """Fold the held passes' whole groups into the statistics (with `final`, the last part too)."""
        import torch

        p = self._held[0] if len(self._held) == 1 else torch.cat(self._held, 1)
        whole = p.shape[1] - p.shape[1] % MC_GROUP
        for g in range(0, whole, MC_GROUP):
            self._group(p[:, g:g + MC_GROUP], self._first + g)
        rest = p[:, whole:]
        if final and rest.shape[1]:
            self._group(rest, self._first + whole)
            whole, rest = p.shape[1], p[:, p.shape[1]:]
        self._first += whole
        self._held = [rest] if rest.shape[1] else []

    def _group(self, p: "torch.Tensor", start: int) -> None:
        import torch

        from dropbench.engines.memberwise import exp

        idx = torch.arange(start, start + p.shape[1], dtype=torch.float64, device=p.device).view(1, -1, 1)
        valid = idx < self.T_col  # [C, G, 1]
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

    def _finish(self) -> None:
        if self._held:
            self._take(final=True)

    def mse(self) -> list[float]:
        """Each run's MSE of the mean of its passes (standardised units)."""
        self._finish()
        mean = self.total / self.T_col.view(-1, 1)
        return (self.y - mean).square().mean(1).tolist()

    def ll(self) -> list[float | None]:
        """Each run's mean over test points of logsumexp_t(-tau/2 (y - yhat_t)^2) - log T
        - log(2 pi)/2 + log(tau)/2, in original units (docs/uci-protocol.md); None without tau."""
        self._finish()
        if self.m is None:
            return [None] * len(self.T)
        from dropbench.engines.memberwise import log

        lse = (self.m + log(self.s)).mean(1).tolist()
        return [None if tau is None or T < 1 else v - math.log(T) - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau)
                for v, T, tau in zip(lse, self.T, self.tau)]
