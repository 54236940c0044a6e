"""The fast mask stream (dropbench/masks.py): its law, its keying by position, the same masks on
every CPU, and the engines drawing the same masks from it.

The law's tests are deterministic (fixed seeds) with tolerances of a two-sided test at level
1e-6 each: a correct stream fails one about once in a million seeds, a broken one (a biased
threshold, a lane or a member repeated, a step or pass reusing masks) by many standard errors.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from dropbench.config import load
from dropbench import masks, results
from dropbench.engines.batched import _train_chunk
from dropbench.engines.reference import train_one
from dropbench.masks import LEVELS, CounterStream, effective_keep, effective_p, keep_levels, levels_of
from dropbench.regs import REGISTRY

Z = stats.norm.isf(0.5e-6)  # two-sided level 1e-6
COUNTER = sorted(n for n, r in REGISTRY.items() if getattr(r, "counter_masks", False))


def _train_draw(seeds, keep, shape, step=1, k=0):
    s = CounterStream(seeds)
    for _ in range(step):
        s.start_step()
    for _ in range(k):
        s.lanes(1)
    return s.bernoulli(np.full(len(seeds), keep_levels(keep)), shape)


# ---- the keep probability to 16 bits --------------------------------------------------------
def test_keep_probabilities_are_represented_to_16_bits_and_recorded_where_they_differ():
    assert keep_levels(0.5) == LEVELS // 2 and effective_p(0.5) == 0.5
    assert effective_keep(0.95) == 62259 / 65536 and effective_p(0.05) == 3277 / 65536
    assert keep_levels(1.0) == LEVELS and keep_levels(1e-9) == 1  # p < 1 keeps something
    assert list(levels_of(np.array([0.95, 0.5, 1.0]))) == [keep_levels(0.95), keep_levels(0.5), LEVELS]
    # every level is reached and the rounding error is at most half a level
    for keep in np.linspace(0, 1, 1001)[1:]:
        assert abs(effective_keep(float(keep)) - keep) <= 0.5 / LEVELS + 1e-15
    cfg = load(["reg=[input_dropout,dropout]", "p=0.05", "reg.input_dropout.p=0.5", "masks=fast"])
    assert results.effective_ps(cfg) == {"dropout": 3277 / 65536}  # 0.5 is exact: not recorded
    assert results.effective_ps(replace(cfg, masks="torch")) == {}  # torch's generator: p as requested


# ---- the law ---------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.5, 0.95, 0.995, 1 - 2**-16, 0.1, 2**-12])
def test_the_keep_rate_is_the_effective_keep(keep):
    m = _train_draw(range(8), keep, (500, 250)).numpy()  # 1e6 draws
    q = effective_keep(keep)
    n = m.size
    assert abs(m.sum() - n * q) <= Z * math.sqrt(n * q * (1 - q)) + 1, (m.mean(), q)


def _pairs_independent(a: np.ndarray, b: np.ndarray) -> None:
    """A chi-square test of independence of two equally long boolean samples, at level 1e-6."""
    table = np.array([[np.sum(~a & ~b), np.sum(~a & b)], [np.sum(a & ~b), np.sum(a & b)]])
    _, pval, _, _ = stats.chi2_contingency(table, correction=False)
    assert pval > 1e-6, table


def test_lanes_are_uniform_over_their_16_bits():
    s = CounterStream([7])
    s.start_step()
    lanes = s.lanes(1 << 20)[0].astype(np.int64)
    for bits in (lanes >> 8, lanes & 0xFF):  # high and low bytes: 256 cells each
        counts = np.bincount(bits, minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-6


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_masks_are_independent_across_elements_members_steps_and_passes(keep):
    shape = (400, 250)
    m = _train_draw(range(4), keep, shape).numpy().reshape(4, -1)
    _pairs_independent(m[0, :-1], m[0, 1:])  # neighbouring elements (lanes of one word)
    _pairs_independent(m[0, :-4], m[0, 4:])  # the same lane of neighbouring words
    _pairs_independent(m[0], m[1])  # two runs (seeds 0 and 1), element by element
    _pairs_independent(m[2], m[3])
    later = _train_draw(range(4), keep, shape, step=2).numpy().reshape(4, -1)
    _pairs_independent(m[0], later[0])  # the next step
    second = _train_draw(range(4), keep, shape, k=1).numpy().reshape(4, -1)
    _pairs_independent(m[0], second[0])  # the next layer of the same step
    s = CounterStream([0])
    s.start_step()
    s.start_mc(0, 2)
    passes = s.bernoulli(np.array([keep_levels(keep)]), (2, *shape)).numpy().reshape(2, -1)
    _pairs_independent(passes[0], passes[1])  # two MC passes
    _pairs_independent(passes[0], m[0])  # an MC pass and the training step before it


# ---- keyed by position, never by company, block or T -----------------------------------------
def test_a_runs_masks_do_not_depend_on_its_company():
    alone = _train_draw([5], 0.7, (3, 33))[0]
    for seeds, i in [([5, 6], 0), ([1, 2, 5], 2), (list(range(40)), 5)]:
        assert torch.equal(_train_draw(seeds, 0.7, (3, 33))[i], alone)


def test_a_pass_has_the_same_masks_in_any_block():
    keep = np.array([keep_levels(0.8)])
    shape = (13, 7)  # 91 elements a pass: passes straddle words

    def passes(block: int, T: int) -> torch.Tensor:
        s = CounterStream([3])
        s.start_step()
        out = []
        for first in range(0, T, block):
            s.start_mc(first, block)
            out.append(s.bernoulli(keep, (block * shape[0], shape[1]))[0].view(block, *shape))
        return torch.cat(out)[:T]

    one = passes(1, 12)
    for block, T in [(3, 12), (5, 12), (12, 12), (7, 30)]:
        assert torch.equal(passes(block, T)[:12], one)


def test_the_masks_are_the_same_on_every_cpu():
    """Integer arithmetic only: these masks are pinned, whatever the CPU (or numpy's SIMD)."""
    s = CounterStream([1, 2])
    s.start_step()
    m = s.bernoulli(np.array([keep_levels(0.5), keep_levels(0.95)]), (6, 50)).numpy()
    s.start_mc(4, 3)
    mc_pass = s.bernoulli(np.array([keep_levels(0.9)] * 2), (3 * 5, 11)).numpy()
    digest = hashlib.sha256(np.packbits(m).tobytes() + np.packbits(mc_pass).tobytes()).hexdigest()[:16]
    assert digest == "5d803033be2f9618", digest


def test_a_draw_must_split_into_its_passes():
    s = CounterStream([1])
    s.start_mc(0, 3)
    with pytest.raises(ValueError, match="does not split into 3 passes"):
        s.lanes(10)


# ---- the engines ---------------------------------------------------------------------------
def _err(a, b) -> float:
    assert [r[0] for r in a.curve] == [r[0] for r in b.curve] and a.status == b.status == "ok"
    vals = [(x, y) for ra, rb in zip(a.rows(), b.rows()) for x, y in zip(ra[1:], rb[1:]) if isinstance(x, float)]
    return max(abs(x - y) / max(abs(y), 1e-300) for x, y in vals)


@pytest.mark.parametrize("name", COUNTER)
def test_the_engines_agree_in_float64_under_the_fast_stream(name):
    """Training and MC masks from the fast stream, the reference's torch forms and the batched
    pieces drawing the same masks; members at p=0 beside others (they draw all ones)."""
    act = ["model.activation=selu", "model.init=lecun_normal"] if name == "alpha_dropout" else []
    base = [f"reg={name}", "masks=fast", "p=0.05", "model.hidden=24", "epochs=6", "eval_every=3", "dtype=float64",
            "eval.mc_samples=30", "eval.tau=2", *act]
    cfgs = [load([*base, "seed=1"]), load([*base, "seed=2", f"reg.{name}.p=0"]), load([*base, "seed=3", "p=0.3"])]
    for cfg, b in zip(cfgs, _train_chunk(cfgs, 3)):
        assert _err(train_one(cfg), b) < 1e-9, cfg.reg


def test_the_fast_stream_is_part_of_the_run_id_and_recorded(tmp_path):
    from dropbench import api

    torch_id, fast_id = load(["reg=dropout"]).run_id, load(["reg=dropout", "masks=fast"]).run_id
    assert torch_id != fast_id and torch_id == load(["reg=dropout", "masks=torch"]).run_id
    sweep = api.run("reg=dropout", "p=0.05", "masks=fast", "epochs=2", "eval_every=1", out=str(tmp_path / "r"))
    row = sweep.runs.iloc[0]
    assert row["masks"] == "fast" and row["effective_p"] == f"dropout={3277 / 65536!r}"


def test_mc_statistics_do_not_depend_on_how_blocks_cut_the_passes():
    """MCStats takes passes in groups of MC_GROUP in order, whatever the blocks: the same passes
    in blocks of 1, 3, 8 or 24 give the same bits."""
    from dropbench.engines.mc import MCStats

    g = torch.Generator().manual_seed(0)
    C, T, n = 3, 50, 7
    passes = torch.randn(C, 56, n, generator=g, dtype=torch.float32)
    y = torch.randn(C, n, generator=g, dtype=torch.float64)
    got = {}
    for block in (1, 3, 8, 24):
        stats = MCStats(y, [T, 20, 1], [1.5, None, 0.3], [2.0, 1.0, 0.5])
        for start in range(0, T, block):
            stats.add(passes[:, start:start + block], start)
        got[block] = (stats.mse(), stats.ll())
    assert all(got[b] == got[1] for b in (3, 8, 24)), got


def test_mc_numbers_do_not_depend_on_the_block_size(monkeypatch):
    """Under the fast stream blocks of 1, 3, 8 or 24 passes give the same numbers in both engines,
    in float64 to rounding: the masks are keyed by pass and the statistics take passes in the
    same groups; only the matrix products see another row count (their last bits are the
    kernels', the block being fixed by the run's shapes)."""
    from dropbench.engines import mc

    cfg = load(["reg=[input_dropout,dropout]", "p=0.2", "model.hidden=16", "epochs=4", "eval_every=4",
                "eval.mc_samples=50", "eval.tau=1.5", "seed=9", "dtype=float64"])
    got = {}
    for block in (1, 3, 8, 24):
        monkeypatch.setattr(mc, "MC_BLOCK_ELEMENTS", block * 20 * 16)
        assert mc.mc_block(cfg, 20, 1) == block
        for name, res in (("torch", train_one(cfg)), ("batched", _train_chunk([cfg, replace(cfg, seed=10)], 2)[0])):
            got[name, block] = res.rows()[-1][6:9]  # test_mc_mse, test_mc_rmse, test_ll
    first = got["torch", 1]
    for key, vals in got.items():
        assert all(abs(a - b) <= 1e-12 * abs(b) for a, b in zip(vals, first)), (key, vals, first)
