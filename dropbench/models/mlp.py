"""model=mlp: the MLP of the seed experiment, built from plain torch.nn modules.

With reg=none it is seed 003's net_overfitting, with reg=dropout (placement=before) its
net_dropped, layer for layer: layer 1 maps the input to `hidden`, layers 2..depth are plain or
residual blocks (model.residual; droppath turns it on), then a Linear to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dropbench.params import POSITIVE, param

if TYPE_CHECKING:
    from torch import nn

    from dropbench.config import Reg


@dataclass(frozen=True)
class Config:
    name: Literal["mlp"] = "mlp"
    hidden: int = param(300, POSITIVE)
    depth: int = param(2, POSITIVE)
    activation: Literal["relu", "tanh", "gelu", "selu"] = "relu"
    placement: Literal["before", "after"] = "before"
    residual: bool = False
    # default: torch.nn.Linear's own init; lecun_normal: every Linear's weight from N(0, 1/fan_in)
    # and its bias 0, the initialisation of self-normalizing networks (Klambauer et al. 2017);
    # glorot_uniform: weights from U(-a, a), a = sqrt(6 / (fan_in + fan_out)), biases 0 (Keras'
    # default, the MC-dropout UCI code's).
    init: Literal["default", "lecun_normal", "glorot_uniform"] = param("default", id_omits_default=True)


def build(n_in: int, n_out: int, cfg: Config, reg: "Reg") -> "nn.Sequential":
    """The network, its weights drawn from torch's global generator in layer order."""
    from torch import nn

    from dropbench import regs
    from dropbench.models.layers import InputRegs, Residual, glorot_uniform_, hidden_layer, lecun_normal_

    inputs = [r.torch_layer(c) for r, c in regs.active(reg, "input")]
    # activation-slot regularizers that also act on the inputs (concrete dropout's inputs=true)
    inputs += [r.torch_layer(c) for r, c in regs.active(reg, "activation") if r.acts_on_inputs(c)]
    layers: list[nn.Module] = ([InputRegs(inputs)] if inputs else []) + hidden_layer(n_in, cfg.hidden, cfg, reg)
    for _ in range(cfg.depth - 1):
        block = hidden_layer(cfg.hidden, cfg.hidden, cfg, reg)
        on_branch = [r.torch_layer(c) for r, c in regs.active(reg, "residual")]
        layers += [Residual(nn.Sequential(*block), on_branch)] if cfg.residual else block
    layers.append(nn.Linear(cfg.hidden, n_out))
    model = nn.Sequential(*layers)
    if cfg.init == "lecun_normal":
        lecun_normal_(model)
    elif cfg.init == "glorot_uniform":
        glorot_uniform_(model)
    return model
