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
    placement = "after"  # on the activation's output, whatever model.placement says

    def adjust_model(self, model: Any, conf: Config) -> Any:
        if model.activation != "selu":
            warnings.warn(f"reg=alpha_dropout with model.activation={model.activation}: alpha dropout keeps mean "
                          "and variance only under selu (add model.activation=selu model.init=lecun_normal)",
                          stacklevel=2)
        return model

    def torch_layer(self, conf: Config) -> Any:
        from torch import nn

        return nn.AlphaDropout(conf.p)

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        return self.torch_layer(conf).train(training)(x)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * model.hidden * model.depth

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    """ATen's ops on each member's Bernoulli(1-p) mask, with [C, 1, 1] columns for its scalars
    (computed in double, cast to the chunk's dtype, as a Python scalar is cast for a tensor op)."""

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.keep64 = chunk, keep64(confs)
        self.active = any(c.p > 0 for c in confs)
        a, aa, aap = zip(*(affine(c.p) for c in confs))
        self.a, self.aa, self.aap = chunk.column(a), chunk.column(aa), chunk.column(aap)

    def forward(self, z: Any, train: bool) -> tuple[Any, Any]:
        if not train or not self.active:
            return z, None
        mask = self.chunk.bernoulli(self.keep64, tuple(z.shape[1:]))  # members at p=0: ones, no draws
        b = mask.add(-1).mul_(self.aa).add_(self.aap)  # p=0: (1-1)*alpha + 0 = 0
        noise = mask.mul_(self.a)  # p=0: a = 1
        return (z * noise).add_(b), noise

    def backward(self, grad: Any, noise: Any) -> Any:
        return grad if noise is None else grad * noise


REGULARIZER = AlphaDropout()
