"""Dropout on the input features (Srivastava et al. 2014; Gal & Ghahramani 2016's UCI
experiments): while training, zero each input feature with prob p and scale survivors by
1/(1-p), as torch.nn.Dropout; the inputs as they are in eval mode.

Its p follows the top-level p, as the other dropout-family members' do: Gal & Ghahramani drop
the inputs and each hidden layer at one rate, so reg=[input_dropout,dropout] p=0.05 is their
setting; reg.input_dropout.p=0.2 sets the input rate alone (Srivastava et al. keep inputs with
0.8, hidden units with 0.5). With reg=dropout it gives dropout on the inputs and after each
hidden activation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dropbench.grids import LogRange
from dropbench.regs.base import MASK_COST, PROB, ChunkView, Piece, Regularizer, param
from dropbench.regs.dropout import _Batched, fast_dropout, torch_dropout


@dataclass(frozen=True)
class Config:
    p: float = param(0.2, PROB)


class InputDropout(Regularizer):
    name = "input_dropout"
    # After every hidden-unit dropout-family member: a run's p column is the hidden rate when both
    # are selected. First in the input slot (input_noise's sigma is then what layer 1 sees).
    order = 45
    slot = "input"
    Config = Config
    tune = {"p": LogRange(0.01, 0.5)}
    shares_p = True
    counter_masks = True

    def torch_layer(self, conf: Config) -> Any:
        return torch_dropout()(conf.p)  # never in place: the input is the run's data

    def torch_forward(self, x: Any, conf: Config, training: bool) -> Any:
        return fast_dropout(x, conf.p, training)

    def cost(self, model: Any, n_train: int, n_in: int, n_params: int) -> float:
        return MASK_COST * n_train * n_in

    def batched(self, chunk: ChunkView, confs: Sequence[Config]) -> Piece:
        return _Batched(chunk, confs)  # dropout's piece: the same masks, on the inputs


REGULARIZER = InputDropout()
