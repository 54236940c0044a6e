"""Shared helpers: results folders written by hand, so statistics can be checked by hand; where
the real UCI files are (uci_dir); bit-for-bit comparisons that name the platform (kernels)."""

import csv
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from dropbench.data.uci import catalog, fetch

ROOT = Path(__file__).resolve().parents[1]


# ---- the environment the suite runs in -----------------------------------------------------------
# The tests read dropbench's output as a CI log gets it: no colours or cursor codes, rich's width
# for a non-terminal. These variables change that, and CI services set some of them (GitHub
# Actions sets GITHUB_ACTIONS, which typer takes as "colour the help as on a terminal"); tests
# that want a width set COLUMNS themselves. Removed after pytest has set up its own output.
TERMINAL_ENV = ("COLUMNS", "LINES", "TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TTY_COMPATIBLE",
                "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")
# No test reaches the network: a download a test did not arrange goes to a closed local port and
# fails at once (tests that download serve the files on 127.0.0.1 and set their own URL).
NO_NETWORK = {fetch.ENV_URL: "http://127.0.0.1:9/closed"}
_saved_env: dict[str, str | None] = {}


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for name in (*TERMINAL_ENV, *NO_NETWORK):
        _saved_env[name] = os.environ.pop(name, None)
    os.environ.update(NO_NETWORK)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_env.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value

RUN_COLUMNS = ["run_id", "data", "model", "reg", "optim", "seed", "p", "epochs",
               "final_train_mse", "final_test_mse", "best_test_mse", "best_epoch", "status", "reason", "seconds"]


def write_sweep(folder: Path, runs: list[dict[str, Any]], curves: list[dict[str, Any]] | None = None) -> Path:
    """A results folder in dropbench's layout: runs.csv (+ curves.csv) from the given rows."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"data": "noisy_linear", "model": "mlp", "optim": "adam", "p": "", "epochs": 100, "best_test_mse": 0.0,
            "best_epoch": 100, "status": "ok", "reason": "", "seconds": 0.1}
    # Columns beyond RUN_COLUMNS (model.activation, the platform columns, ...) go before the results.
    extra = [k for r in runs for k in r if k not in RUN_COLUMNS]
    split = RUN_COLUMNS.index("final_train_mse")
    fields = [*RUN_COLUMNS[:split], *dict.fromkeys(extra), *RUN_COLUMNS[split:]]
    with (folder / "runs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for i, r in enumerate(runs):
            w.writerow({**base, "run_id": f"r{i:03d}", **r})
    with (folder / "curves.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run_id", "epoch", "train_mse", "test_mse", "train_loss"], lineterminator="\n")
        w.writeheader()
        for c in curves or []:
            w.writerow({"train_loss": 0.0, **c})
    return folder


def platform(torch_version: str = "2.13.0", capability: str = "AVX512", cpu: str = "Some CPU") -> dict[str, str]:
    """The platform columns a run of this dropbench records (dropbench/provenance.py)."""
    return {"dropbench_version": "0.1.0", "torch_version": torch_version, "cpu": cpu, "cpu_capability": capability, "gpu": ""}


@pytest.fixture
def hand_sweep(tmp_path: Path) -> Path:
    """Final: reg=none test 1, 2, 3 (train .1 .2 .3); reg=dropout p=0.5 test .5 .7 .9 (train .2); seeds 0-2."""
    runs = [{"reg": "none", "seed": s, "final_train_mse": tr, "final_test_mse": te}
            for s, (tr, te) in enumerate([(0.1, 1.0), (0.2, 2.0), (0.3, 3.0)])]
    runs += [{"reg": "dropout", "p": 0.5, "seed": s, "final_train_mse": 0.2, "final_test_mse": te}
             for s, te in enumerate([0.5, 0.7, 0.9])]
    # Curves at epochs 50 and 100 (= final). At 50, test MSE is half the final one for reg=none
    # (so that is its best epoch) and twice it for dropout; train MSE is 0.05 everywhere at 50.
    half = {"none": 0.5, "dropout": 2.0}
    curves = [{"run_id": f"r{i:03d}", "epoch": e, "train_mse": r["final_train_mse"] if e == 100 else 0.05,
               "test_mse": r["final_test_mse"] * (half[r["reg"]] if e == 50 else 1)} for i, r in enumerate(runs) for e in (50, 100)]
    return write_sweep(tmp_path / "hand", runs, curves)


def autograd_and_backward(chunk: Any, of: str = "network") -> tuple[list, list, list]:
    """One training forward of a batched chunk's full batch, then autograd's gradient of the
    members' summed MSE and the chunk's hand-written backward of the same pass (same masks):
    (autograd's gradients, the chunk's, the tape). `of`: the network's parameters, or "learned"
    for its one learning piece's (concrete dropout's p)."""
    import torch

    if of == "learned":
        (piece,) = chunk.learners
        leaves = [p.detach().clone().requires_grad_() for p in piece.params]
        piece.params[:] = leaves
        got = piece.grads
    else:
        leaves = [p.detach().clone().requires_grad_() for p in chunk.params]
        chunk.params = leaves
        got = chunk.grads
    tape: list = []
    d = chunk.forward(chunk.x, train=True, tape=tape) - chunk.y
    want = torch.autograd.grad(d.pow(2).mean(dim=(1, 2)).sum(), leaves)
    with torch.no_grad():
        chunk._backward(tape, chunk._inv_n * (2.0 * d.detach()))
    return list(want), got, tape


# ---- the real UCI files -------------------------------------------------------------------------
HOW_TO_ENABLE_UCI = f"set {fetch.ENV_DIR} to a folder with the UCI split files, see README"


def _uci_candidates() -> list[tuple[Path, str]]:
    """Where the real files may be, as the loader looks for them: $DROPBENCH_UCI_DIR alone when it
    is set; else the download cache, then ../shared/uci beside the clone (CI's layout)."""
    env = os.environ.get(fetch.ENV_DIR)
    if env:
        return [(Path(env).expanduser(), f"{fetch.ENV_DIR}={env}")]
    shared = ROOT.parent / "shared" / "uci"
    return [(fetch.cache_dir(), f"the download cache {fetch.cache_dir()}"), (shared, f"../shared/uci ({shared})")]


def find_uci_dir() -> tuple[Path | None, str]:
    """(the first candidate holding every file the loader reads, "") or (None, why none does).
    A folder counts only when complete: a cache that downloaded one split is not enough."""
    why = []
    for folder, name in _uci_candidates():
        if not folder.is_dir():
            why.append(f"{name} does not exist")
            continue
        missing = [rel for rel in catalog.MANIFEST if not (folder / rel).is_file()]
        if not missing:
            return folder, ""
        why.append(f"{name} lacks {len(missing)} of the {len(catalog.MANIFEST)} files (e.g. {missing[0]})")
    return None, "; ".join(why)


@pytest.fixture(scope="session")
def uci_dir() -> Path:
    """The folder with the eight UCI data sets' files (one sub-folder each, as the loader reads
    them); the test is skipped, saying how to enable it, where there is none."""
    folder, why = find_uci_dir()
    if folder is None:
        pytest.skip(f"no UCI files here ({why}): {HOW_TO_ENABLE_UCI}")
    return folder


# ---- bit-identity between CPU kernel paths (marker `kernels`) ----------------------------------
# Two kernel paths giving the same bits (a batch of 2 and of 37, a hand-written backward and
# autograd's, rand and bernoulli_) is a property of the CPU and the torch build, which dropbench
# relies on and these tests pin on whatever machine runs them. A failure on a new machine should
# read as "platform" first: the message names it.
def platform_line() -> str:
    """`platform: <cpu model> <torch's CPU capability> torch <version>`, as runs record it."""
    import torch

    from dropbench.provenance import cpu_model

    return f"platform: {cpu_model()} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"


def _bits(t: Any) -> Any:
    """A tensor's elements as integers of the same width: equal iff the same bits (-0.0 is not
    0.0; a NaN equals the same NaN)."""
    import torch

    t = t.detach().cpu().contiguous()
    if t.is_floating_point() or t.is_complex():
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}[t.element_size()]
        return t.view(width)
    return t


def first_difference(a: Any, b: Any, at: str = "") -> str | None:
    """Where a and b first differ bit for bit, or None: tensors, floats (by their bits), and
    lists, tuples and dicts of them, compared element by element; anything else by ==."""
    import torch

    where = at or "the value"
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{where}: {type(a).__name__} vs {type(b).__name__}"
        if (a.dtype, a.shape) != (b.dtype, b.shape):
            return f"{where}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
        differ = _bits(a) != _bits(b)
        if a.is_complex():
            differ = differ.view(*a.shape, -1).any(-1)
        if not differ.any():
            return None
        i = tuple(int(k) for k in differ.nonzero()[0])
        return (f"{at}[{', '.join(map(str, i))}]: {a[i].item()!r} vs {b[i].item()!r} "
                f"({int(differ.sum())} of {a.numel()} elements differ)")
    if isinstance(a, float) and isinstance(b, float):
        return None if struct.pack("<d", a) == struct.pack("<d", b) else f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(map(str, a.keys() ^ b.keys()))} are in one only"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{at}[{k!r}]")) is not None), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{at}[{i}]")) is not None), None)
    return None if type(a) is type(b) and a == b else f"{where}: {a!r} vs {b!r}"


def assert_bits_equal(got: Any, want: Any, what: str) -> None:
    """Assert that got and want are the same bits; the failure names what was compared, the
    first difference and the platform, so it reads as what it most likely is on a new machine."""
    d = first_difference(got, want)
    if d is not None:
        raise AssertionError(f"{what}: not bit-identical at {d}; {platform_line()} "
                             "(bit-identity between kernel paths is a property of the CPU and torch build)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failing `kernels` test's report gets a section naming the platform, whatever its assert."""
    report = yield
    if report.when == "call" and report.failed and item.get_closest_marker("kernels") is not None:
        report.sections.append(("kernels", f"{platform_line()}\nThis test asserts bit-identity between CPU kernel "
                                           "paths: a property of the CPU and torch build (pytest -m 'not kernels' skips them)."))
    return report
