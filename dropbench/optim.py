"""The optimizer configs' runtime side: the weight decay a run's optimizer applies, to which
parameters, and the reference engine's torch.optim optimizer.

The optimizer slot of the registry (reg=l2) is the weight decay: coupled (Adam's and SGD's
weight_decay) or decoupled (AdamW; SGD's w <- w*(1-lr*wd), which the reference engine applies
itself). The batched program reads the same facts for its fused step, so both engines decay
exactly the same parameters by the same amount. torch is imported only where a torch.optim
optimizer is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropbench import regs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dropbench.config import RunConfig


def weight_decay(cfg: "RunConfig") -> tuple[float, bool]:
    """(weight_decay, decoupled) of the optimizer-slot regularizer (reg=l2), if any (at most one)."""
    return next((r.decay(c) for r, c in regs.active(cfg.reg, "optimizer")), (0.0, False))


def decays_biases(cfg: "RunConfig") -> bool:
    """Whether the weight decay acts on the biases too (reg.l2.biases; true without an l2)."""
    return next((getattr(c, "biases", True) for _, c in regs.active(cfg.reg, "optimizer")), True)


def decayed(model: "nn.Module", cfg: "RunConfig") -> list["nn.Parameter"]:
    """The parameters the weight decay acts on: all, or every Linear's weight (reg.l2.biases=false)."""
    if decays_biases(cfg):
        return list(model.parameters())
    return [p for n, p in model.named_parameters() if not n.endswith("bias")]


def make_optimizer(model: "nn.Module", cfg: "RunConfig") -> "torch.optim.Optimizer":
    """The optimizer with coupled weight decay (reg=l2) or AdamW's decoupled one; with
    reg.l2.biases=false the biases form a second parameter group without decay."""
    import torch

    wd, decoupled = weight_decay(cfg)
    params: list = list(model.parameters())
    if not decays_biases(cfg):
        keep = {id(p) for p in decayed(model, cfg)}
        params = [{"params": [p for p in params if id(p) in keep]},
                  {"params": [p for p in params if id(p) not in keep], "weight_decay": 0.0}]
    o = cfg.optim
    if o.name == "adam":
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        # fused=True: torch's one-pass CPU kernel, the one the batched engine runs too.
        return cls(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=wd, fused=_fused(model))
    # SGD has no decoupled form in torch: the reference engine applies w <- w*(1-lr*wd) itself.
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=0.0 if decoupled else wd)


def _fused(model: "nn.Module") -> bool:
    """Whether torch has a fused Adam kernel for the model's device."""
    return next(model.parameters()).device.type in ("cpu", "cuda")
