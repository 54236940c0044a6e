"""Alpha dropout (Klambauer et al. 2017, "Self-Normalizing Neural Networks"): exactly
torch.nn.AlphaDropout. While training, each activation is set with prob p to SELU's negative
saturation value -scale*alpha, then an affine map a*x + b restores mean 0 and variance 1 for
inputs of mean 0 and variance 1; identity in eval mode and at p=0 (no draws).

It acts after the activation whatever model.placement says (placement: "after" below): the
dropped value is SELU's saturation, so on pre-activations it means nothing. It is meant for
model.activation=selu (with model.init=lecun_normal); with another activation it still runs, as
torch.nn.AlphaDropout does, with a warning, so that sweeps across activations are not aborted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, keep64, param

# -scale*alpha of SELU, as ATen's _dropout_impl writes it (the value a dropped unit takes).
ALPHA = 1.7580993408473766


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


def affine(p: float) -> tuple[float, float, float]:
    """(a, alpha*a, alpha*a*p) in double, in ATen's order of operations: the output is
    x*(mask*a) + ((mask-1)*(alpha*a) + alpha*a*p)."""
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1) * (1 - p))
    return a, ALPHA * a, ALPHA * a * p


class AlphaDropout(Regularizer):
    name = "alpha_dropout"
    order = 27  # after Gaussian dropout, in the activation slot
    slot = "activation"
    Config = Config
    tune = {"p": LogRange(0.01, 0.2)}  # SNNs drop little: the paper used 0.05 and 0.1
    shares_p = True
    counter_masks = True
    placement = "after"  # on the activation's output, whatever model.placement says

    def adjust_model(self, model: Any, conf: Config) -> Any:
        if model.activation != "selu":
            warnings.warn(f"reg=alpha_dropout with model.activation={model.activation}: alpha dropout keeps mean "
                          "and variance only under selu (add model.activation=selu model.init=lecun_normal)",
                          stacklevel=2)
        return model

    def torch_layer(self, conf: Config) -> Any:
        return torch_alpha_dropout()(conf.p)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        return fast_alpha_dropout(x, conf.p, training)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    """ATen's ops on each member's Bernoulli(1-p) mask, with [C, 1, 1] columns for its scalars
    (computed in double, cast to the chunk's dtype, as a Python scalar is cast for a tensor op)."""

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        from dropbench.masks import effective_p

        self.chunk, self.keep64 = chunk, keep64(confs, chunk.masks)
        # the fast stream draws (and moves on to its next draw) at p=0 too
        self.active = any(c.p > 0 for c in confs) or chunk.masks == "fast" or chunk.mc_fast
        a, aa, aap = zip(*(affine(effective_p(c.p) if chunk.masks == "fast" else c.p) for c in confs))
        self.a, self.aa, self.aap = chunk.column(a), chunk.column(aa), chunk.column(aap)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train or not self.active:
            return z, None
        mask = self.chunk.bernoulli(self.keep64, tuple(z.shape[1:]))  # members at p=0: ones, no draws
        return alpha(z, mask, self.a, self.aa, self.aap)

    def backward(self, grad: Any, noise: Any) -> Any:
        return grad if noise is None else grad * noise


def fast_alpha_dropout(x: Any, p: float, training: bool) -> Any:
    """Alpha dropout of x: ATen's ops on the run's fast-stream mask where it draws from it
    (dropbench/masks.py), else F.alpha_dropout, from torch's generator."""
    import torch.nn.functional as F

    from dropbench import masks

    if training:
        mask = masks.torch_mask(x.shape, 1.0 - p, x.dtype, x.device)
        if mask is not None:
            q = masks.effective_p(p) if masks.training_fast() else p
            a, aa, aap = (masks.keep_tensor(v, x.dtype, x.device) for v in affine(q))
            return alpha(x, mask, a, aa, aap)[0]
    return F.alpha_dropout(x, p, training)


@cache
def torch_alpha_dropout() -> type:
    """torch.nn.AlphaDropout, drawing from the run's fast stream where it does; elsewhere
    torch's own forward, bit for bit. Named AlphaDropout: it prints as torch's."""
    from torch import nn

    class AlphaDropout(nn.AlphaDropout):
        def forward(self, x: Any) -> Any:
            return fast_alpha_dropout(x, self.p, self.training)

    return AlphaDropout


def alpha(z: Any, mask: Any, a: Any, aa: Any, aap: Any) -> tuple[Any, Any]:
    """ATen's alpha dropout of z on a keep mask (consumed), with its affine constants as tensors:
    (output, the factor its gradient takes)."""
    b = mask.add(-1).mul_(aa).add_(aap)  # p=0: (1-1)*alpha + 0 = 0
    noise = mask.mul_(a)  # p=0: a = 1
    return (z * noise).add_(b), noise


REGULARIZER = AlphaDropout()
