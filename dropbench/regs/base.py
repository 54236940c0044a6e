"""What a regularizer module declares, and the helpers both engines give it.

A regularizer is one module in dropbench/regs/ holding a `REGULARIZER` (an instance of a
`Regularizer` subclass) plus its conf/reg/<name>.yaml. The module declares:

- `Config`: a frozen dataclass of its keys; each range is declared once with `param(...)`
  (dropbench.params, re-exported here) and checked when the config is built (no hand-written validate);
- `slot`: where it acts (SLOTS, in the order one training step meets them);
- its torch.nn form (`torch_forward`, or `penalty` / `decay` for the loss and optimizer slots);
- its batched piece (`batched`), drawing from each member's own generator as the reference does;
- `cost`: its share of a training step, in parameters' worth of work, for the chunk planner.

A `loop`-slot regularizer (early stopping) changes no tensor of the program: it holds out some
training rows as validation rows (`holdout`), which every evaluation then scores (the `val_mse`
column), and decides after each evaluation, from those scores alone, which evaluation the run is
reported at and whether it stops (`watch`). engines/loop.py applies the decision the same way in
both engines, so it has neither a torch form nor a batched piece.

Nothing here imports torch at import time: dropbench.config reads the registry, and `dropbench run
--cfg` should not pay for torch.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

# A plug-in declares its Config's fields with these (from dropbench.regs.base import PROB, param).
from dropbench.params import NONNEG, PROB, Range, param  # noqa: F401

if TYPE_CHECKING:
    import torch

    from dropbench.grids import Spread
    from dropbench.models.mlp import Config as MLP

# Where a regularizer acts, in the order a step meets them; within a slot, regularizers apply in
# registry order (their `order`), each on the output of the one before.
#   input:      the input features of the first layer (training only)
#   weight:     each hidden Linear's weight matrix, before it is used
#   activation: each hidden layer's output, before or after the activation (model.placement)
#   residual:   each residual branch, before it is added to the skip path
#   loss:       a penalty added to the training loss
#   optimizer:  the optimizer's weight decay (at most one)
#   after_step: the parameters, after each optimizer step (constraints)
#   loop:       the training loop, after each evaluation: which evaluation the run is reported at,
#               and whether it stops (early stopping); may hold out training rows to validate on
SLOTS = ("input", "weight", "activation", "residual", "loss", "optimizer", "after_step", "loop")
EXCLUSIVE_SLOTS = ("optimizer", "loop")  # one optimizer, one weight decay; one rule for when to stop
NO_PIECE_SLOTS = ("optimizer", "loop")  # slots with no piece in the batched program

MASK_COST = 3.0  # drawing one mask element costs as much as 3 parameters' share of a step


# ---- the regularizer -------------------------------------------------------------------------
class Regularizer:
    """One regularizer. Subclasses set the class attributes and the hooks of their slot."""

    name: ClassVar[str]
    order: ClassVar[int]  # canonical position: in labels ("dropout+l2"), and within a slot
    slot: ClassVar[str]
    Config: ClassVar[type]
    shares_p: ClassVar[bool] = False  # dropout family: its `p` follows the top-level p (YAML: p: ${p})
    strength: ClassVar[str] = "p"  # the field whose 0 makes it the identity, drawing nothing
    excludes: ClassVar[dict[str, str]] = {}  # other regularizer -> why they may not combine
    draws: ClassVar[bool] = True  # takes random draws while training
    # Its masks are Bernoulli, drawn through ChunkView.bernoulli (batched) and masks.torch_mask
    # (its torch form): they come from the fast counter stream under `masks: fast` (training)
    # and `eval.mc_masks: fast` (MC passes; dropbench/masks.py).
    counter_masks: ClassVar[bool] = False
    # activation slot: "before" or "after" the activation whatever model.placement says (alpha
    # dropout acts on SELU's output by definition); None follows model.placement.
    placement: ClassVar[str | None] = None
    # An activation-slot regularizer that may also act on the input features (before the first
    # Linear, after the input-slot ones) names the bool Config field that turns that on.
    inputs_field: ClassVar[str | None] = None
    # Config keys outside reg.* that it sets itself (adjust_model; DropPath: model.residual).
    # Reports pair its runs with reference runs that differ there, and do not show such a key
    # as a grouping key of its own where it only follows reg.
    sets: ClassVar[tuple[str, ...]] = ()
    # A caption line for every table that holds its runs (what it changes beyond its own keys);
    # None: nothing to say.
    note: ClassVar[str | None] = None
    # The knob(s) that set its strength, each with the range `dropbench tune --budget N` spreads
    # over (dropbench/grids.py): {Config field: LogRange(...) or LinearRange(...)}. {} declares that
    # it has no strength to tune; None (not declared) makes tune ask for its grid (--over NAME:KEY=...).
    tune: ClassVar[dict[str, "Spread"] | None] = None

    @property
    def mc(self) -> bool:
        """Whether it stays active in MC evaluation (eval.mc_samples: MC dropout). By default
        the dropout family (shares_p) does; a subclass sets `mc = True` or `False` to decide
        otherwise (concrete dropout: its learned rates)."""
        return self.shares_p

    # -- config --
    def adjust_model(self, model: "MLP", conf: Any) -> "MLP":
        """The model this regularizer needs (e.g. DropPath turns residual blocks on)."""
        return model

    def acts_on_inputs(self, conf: Any) -> bool:
        return self.inputs_field is not None and bool(getattr(conf, self.inputs_field))

    def program_key(self, conf: Any) -> tuple:
        """Config values that change the batched program's structure: runs share a chunk only
        when these are equal (values that only change numbers, like p, need not be)."""
        return (self.acts_on_inputs(conf),) if self.inputs_field else ()

    def cost(self, model: "MLP", n_train: int, n_in: int, n_params: int) -> float:
        """Extra work per training step, in parameters' worth (chunk planner only, never numbers)."""
        return 0.0

    # -- engine=torch (the reference) --
    def torch_forward(self, x: "torch.Tensor", conf: Any, training: bool) -> "torch.Tensor":
        """input, weight, activation and residual slots: the tensor with the regularizer applied."""
        raise NotImplementedError(f"{self.name} has no torch form for slot {self.slot}")

    def torch_layer(self, conf: Any) -> "torch.nn.Module":
        """The torch.nn module the reference network holds (default: torch_forward in a module)."""
        return reg_layer(self, conf)

    def penalty(self, params: Sequence["torch.Tensor"], conf: Any) -> "torch.Tensor":
        """loss slot: the term added to the loss (autograd gives the reference's gradient)."""
        raise NotImplementedError

    def torch_penalty(self, model: "torch.nn.Module", conf: Any, n_train: int) -> "torch.Tensor | None":
        """A term the reference adds to the loss from the model's own modules (a regularizer with
        learned parameters, e.g. concrete dropout; None: nothing). n_train: the rows trained on."""
        return None

    def torch_learned(self, model: "torch.nn.Module", conf: Any) -> list[float] | None:
        """The values of its learned parameters to record at each evaluation (None: it learns none)."""
        return None

    def decay(self, conf: Any) -> tuple[float, bool]:
        """optimizer slot: (weight_decay, decoupled)."""
        raise NotImplementedError

    def after_step(self, params: Sequence["torch.Tensor"], conf: Any) -> None:
        """after_step slot: change the parameters in place after each step (reference engine).

        `params` is the model's parameters in layer order, [W1, b1, ..., W_out, b_out], each W in
        torch's [out, in] layout (a unit's incoming weights are a row)."""
        raise NotImplementedError

    # -- loop slot (both engines: engines/loop.py) --
    def holdout(self, conf: Any) -> float:
        """The fraction of the training rows held out as validation rows (0: none, every row is
        trained on). dropbench.data cuts them off (the last rows in the split's order), scales the
        data with the rows trained on, and every evaluation scores them (val_mse). At strength 0 it
        must be 0: strength 0 changes no number."""
        return 0.0

    def watch(self, val: Sequence[float], conf: Any) -> tuple[int | None, bool]:
        """loop slot: after each evaluation, from the run's validation MSEs so far (one per
        evaluation, oldest first): (the index of the evaluation the run is reported at, None for
        the last one; whether the run stops now). The index may only stay where it was or move to
        the newest evaluation: the run's fitted curve is drawn when it moves there."""
        raise NotImplementedError

    # -- engine=batched --
    def batched(self, chunk: "ChunkView", confs: Sequence[Any]) -> "Piece":
        """This regularizer's piece of a chunk's tensor program, for the members' configs."""
        raise NotImplementedError(f"{self.name} has no batched form")


class Piece:
    """A regularizer's part of the batched program; members are the leading [C] dimension.

    input/weight/activation/residual slots: `forward(z, train) -> (z', saved)` and
    `backward(grad, saved) -> grad` (the gradient autograd would take through forward, with the
    same kernels in the same order: the engine checks it bit for bit). loss slot: `penalty(params)
    -> [C]` and `add_grad(grads, params)`. after_step slot: `after_step(params)`, in place, on
    [W1, b1, ..., W_out, b_out] with each W stored transposed, [C, in, out] (a unit's incoming
    weights are a column; biases are [C, 1, out]).
    """

    # A piece with learned parameters (concrete dropout's p) keeps them, [C, ...] each, in `params`
    # with their gradients in `grads`: its backward (and add_grad) writes those, and the chunk's
    # optimizer steps them with the network's, without weight decay. `learned()` gives each
    # member's values to record (None for a member it is off for).
    params: list["torch.Tensor"] = []
    grads: list["torch.Tensor"] = []
    layered: bool = False  # forward(z, train, layer): told which hidden layer (0-based) it acts on
    has_penalty: bool = False  # a non-loss-slot piece that also adds penalty/add_grad to the objective
    # Its forward reads the members' values only through the chunk (ChunkView.dropout, bernoulli,
    # dropout_factor, draws, handed the piece's full [C, 1, 1] columns), so the chunk may run MC
    # passes over a window of its members at a time (engines/program.py); a piece that multiplies
    # by a column of its own must leave this False.
    windowed: bool = False

    def forward(self, z: "torch.Tensor", train: bool) -> tuple["torch.Tensor", Any]:
        raise NotImplementedError

    def learned(self) -> list[list[float] | None] | None:
        return None

    def backward(self, grad: "torch.Tensor", saved: Any) -> "torch.Tensor":
        raise NotImplementedError

    def penalty(self, params: Sequence["torch.Tensor"]) -> "torch.Tensor":
        raise NotImplementedError

    def add_grad(self, grads: list["torch.Tensor"], params: Sequence["torch.Tensor"]) -> None:
        raise NotImplementedError

    def after_step(self, params: Sequence["torch.Tensor"]) -> None:
        raise NotImplementedError


class ChunkView:
    """What a batched piece may use of its chunk (dropbench.engines.program.Chunk implements it)."""

    dtype: "torch.dtype"
    device: "torch.device"
    gens: list["torch.Generator"]
    masks: str  # training's mask stream (RunConfig.masks): keep64(confs, chunk.masks)
    mc_fast: bool  # the MC passes' Bernoulli masks come from the fast stream (eval.mc_masks)
    n_rows: int  # training rows per member (N)

    def learned(self, name: str) -> list["torch.Tensor"]:
        """The learned parameters of regularizer `name`'s torch modules, as each member's reference
        model initialises them: one [C, *shape] per module, in module order (zeros for a member
        whose module has none)."""
        raise NotImplementedError

    def column(self, values: Sequence[float]) -> "torch.Tensor":
        """Per-member values as a [C, 1, 1] tensor of the chunk's dtype (computed in double, then cast)."""
        raise NotImplementedError

    def draws(self, active: Sequence[bool], shape: tuple[int, ...], dtype: "torch.dtype",
              sample: Callable[..., "torch.Tensor"] | None = None) -> "torch.Tensor":
        """[C, *shape]: each active member's `sample(shape, dtype=, generator=)` (default torch.rand)
        from its own generator; zeros, drawing nothing, for the others."""
        raise NotImplementedError

    def dropout_factor(self, keep64: "torch.Tensor", keep: "torch.Tensor", shape: tuple[int, ...]) -> "torch.Tensor":
        """bernoulli(keep64, shape) / keep (keep: keep64 in the chunk's dtype), the factor inverted
        dropout multiplies by, bit for bit (the fast stream makes it in one pass)."""
        return self.bernoulli(keep64, shape) / keep

    def dropout(self, z: "torch.Tensor", keep64: "torch.Tensor", keep: "torch.Tensor") -> tuple["torch.Tensor", Any]:
        """Inverted dropout of z ([C, ...]): z * dropout_factor(keep64, keep, z's shape), and what
        `dropout_backward` needs (here the factor; None in an MC pass, which has no backward)."""
        f = self.dropout_factor(keep64, keep, tuple(z.shape[1:]))
        return z * f, f

    def dropout_backward(self, grad: "torch.Tensor", saved: Any) -> "torch.Tensor":
        """The gradient through `dropout`, from what it returned beside its result: grad times the factor."""
        return grad * saved

    def bernoulli(self, keep64: "torch.Tensor", shape: tuple[int, ...]) -> "torch.Tensor":
        """Each member's `torch.empty(shape).bernoulli_(keep)` bit for bit, in the chunk's dtype
        (all ones, drawing nothing, where keep is 1)."""
        raise NotImplementedError


def keep64(confs: Sequence[Any], masks: str = "torch") -> "torch.Tensor":
    """1 - p per member, [C, 1, 1] in double: the Python float the reference hands bernoulli_;
    under the fast stream (masks="fast") the keep probability it represents (masks.effective_keep)."""
    import torch

    from dropbench.masks import effective_keep

    keep = [1 - c.p for c in confs]
    if masks == "fast":
        keep = [effective_keep(k) for k in keep]
    return torch.tensor(keep, dtype=torch.float64).view(-1, 1, 1)


# ---- torch.nn forms --------------------------------------------------------------------------
@cache
def _layer_classes() -> tuple[type, type]:
    from torch import nn
    import torch.nn.functional as F

    class RegLayer(nn.Module):
        """A regularizer's torch_forward as an nn.Module (train/eval follow the model's)."""

        def __init__(self, reg: Regularizer, conf: Any) -> None:
            super().__init__()
            self.reg, self.conf = reg, conf

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.reg.torch_forward(x, self.conf, self.training)

        def extra_repr(self) -> str:
            return f"{self.reg.name}: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.conf).items())

    class RegLinear(nn.Linear):
        """nn.Linear whose weight passes through the weight-slot regularizers first (same init)."""

        def __init__(self, n_in: int, n_out: int, regs: Sequence[tuple[Regularizer, Any]]) -> None:
            super().__init__(n_in, n_out)
            self.regs = list(regs)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            w = self.weight
            for reg, conf in self.regs:
                w = reg.torch_forward(w, conf, self.training)
            return F.linear(x, w, self.bias)

        def extra_repr(self) -> str:
            return super().extra_repr() + "".join(f", {r.name}={dataclasses.asdict(c)}" for r, c in self.regs)

    return RegLayer, RegLinear


def reg_layer(reg: Regularizer, conf: Any) -> "torch.nn.Module":
    return _layer_classes()[0](reg, conf)


def reg_linear(n_in: int, n_out: int, regs: Sequence[tuple[Regularizer, Any]]) -> "torch.nn.Linear":
    if not regs:
        from torch import nn

        return nn.Linear(n_in, n_out)
    return _layer_classes()[1](n_in, n_out, regs)
