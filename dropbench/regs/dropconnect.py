"""DropConnect (seed 004; Wan et al. 2013): while training, drop each hidden layer's weights (not
activations) with prob p, survivors scaled by 1/(1-p); the plain weights in eval mode. The bias
and the output layer are never dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, keep64, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


class DropConnect(Regularizer):
    name = "dropconnect"
    order = 40
    slot = "weight"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}
    shares_p = True
    counter_masks = True

    def torch_forward(self, w: Any, conf: Config, training: bool) -> Any:
        """Seed 004's MyLinear: inverted dropout on the weight matrix."""
        from dropbench.regs.dropout import fast_dropout

        return fast_dropout(w, conf.p, training)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * (n_in * model.hidden + (model.depth - 1) * model.hidden * model.hidden)

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)


class _Batched(Piece):
    """The batched engine stores W transposed ([C, in, out]); masks are drawn as [out, in], as
    the reference's weight is laid out, then transposed."""

    def __init__(self, chunk: ChunkView, confs: Sequence[Config]) -> None:
        self.chunk, self.keep64 = chunk, keep64(confs, chunk.masks)
        self.keep = self.keep64.to(dtype=chunk.dtype, device=chunk.device)

    def forward(self, w: Any, train: bool) -> tuple[Any, Any]:
        if not train:
            return w, None
        f = self.chunk.dropout_factor(self.keep64, self.keep, (w.shape[2], w.shape[1])).transpose(1, 2)
        return w * f, f

    def backward(self, grad: Any, f: Any) -> Any:
        return grad if f is None else grad * f


REGULARIZER = DropConnect()
