"""Plug-ins from outside the package (issue 18, section 2): the worked example of docs/extending.md
(examples/dropbench_weightnoise) installed into a temporary folder and found through its entry
points, a user's config directory with `_target_`, torch-only regularizers in the batched engine's
generic path, dropbench.testing's checks on plug-ins, and results folders that name plug-ins never
importing anything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import types
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch
import yaml

from dropbench import registration, regs, testing
from dropbench.errors import UserError
from dropbench.params import POSITIVE, param

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dropbench_weightnoise"


# ---- the example package, installed into a temporary folder ------------------------------------
def _install(target: Path) -> None:
    """pip builds and installs the example (no dependencies, no network) where setuptools is at
    hand; otherwise its files and a .dist-info written from its pyproject, which is what
    importlib.metadata reads entry points from."""
    src = target.parent / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    if importlib.util.find_spec("setuptools") is not None:
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                            "--target", str(target), str(src)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return
    meta = tomllib.loads((src / "pyproject.toml").read_text())["project"]
    shutil.copytree(src / "dropbench_weightnoise", target / "dropbench_weightnoise")
    info = target / f"dropbench_weightnoise-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in meta["entry-points"].items()))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("example") / "site"
    _install(target)
    return target


def cli(*args: str, path: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("DROPBENCH_CONFIG_DIR", None)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "dropbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_the_installed_example_is_listed_with_its_package(site):
    p = cli("groups", path=site)
    assert p.returncode == 0, p.stderr
    lines = {line.split(":", 1)[0]: line for line in p.stdout.splitlines()}
    assert "weight_noise [package dropbench-weightnoise]" in lines["reg"]
    assert "sinc [package dropbench-weightnoise]" in lines["data"]
    assert "dropout," in lines["reg"] and "dropout [" not in lines["reg"], "built-ins carry no origin"
    assert "plug-ins" in p.stdout
    bare = cli("groups")
    assert "weight_noise" not in bare.stdout and "plug-ins" not in bare.stdout


@pytest.mark.slow
def test_the_example_runs_in_both_engines_and_tunes_against_dropout(site, tmp_path):
    """The docs' walk-through: a run in each engine (float64: they agree), then `dropbench tune`
    of the plug-in against dropout on the plug-in's data set."""
    out = tmp_path / "run"
    p = cli("run", "-m", "reg=weight_noise", "data=sinc", "engine=torch,batched", "dtype=float64", "reg.weight_noise.std=0.3",
            "epochs=20", "eval_every=10", "model.hidden=16", f"out={out}", "-q", path=site)
    assert p.returncode == 0, p.stderr
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv").set_index("engine")
    assert set(runs["reg"]) == {"weight_noise"} and set(runs["data"]) == {"sinc"}
    for k in ("final_train_mse", "final_test_mse"):
        assert abs(runs.loc["torch", k] - runs.loc["batched", k]) <= 1e-9 * abs(runs.loc["torch", k]), k

    tuned = tmp_path / "tuned"
    p = cli("tune", "-m", "data=sinc", "reg=weight_noise,dropout", "seed=range(2)", "epochs=20", "eval_every=20", "model.hidden=16",
            "--budget", "2", f"out={tuned}", path=site)
    assert p.returncode == 0, p.stderr
    chosen = pd.read_csv(tuned / "tuned.csv")
    assert set(chosen["reg"]) == {"weight_noise", "dropout"}
    # the budget spread over each method's declared range: the plug-in's own (std in [0.01, 0.5])
    assert set(chosen.loc[chosen["reg"] == "weight_noise", "reg.weight_noise.std"]) <= {0.01, 0.5}
    final = pd.read_csv(tuned / "final" / "runs.csv")
    assert len(final) == 4 and (final["status"] == "ok").all()
    assert "weight_noise" in p.stdout and "dropout" in p.stdout


def test_the_example_passes_dropbenchs_checks(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    from dropbench_weightnoise import sinc, weight_noise

    before = dict(regs.REGISTRY)
    assert testing.check_regularizer(weight_noise.WeightNoise, pairs=False, invariance=False) == "weight_noise"
    assert testing.check_dataset(sinc) == "sinc"
    assert regs.REGISTRY == before, "a check leaves the registries as it found them"


@pytest.mark.kernels
def test_a_torch_only_regularizer_is_bit_identical_alone_and_in_any_chunk(site, monkeypatch):
    """The generic path computes each member on its own: invariance, as the built-ins have it."""
    monkeypatch.syspath_prepend(str(site))
    from dropbench_weightnoise import weight_noise

    with registration.registered(weight_noise.REGULARIZER):
        for act in testing.ACTIVATIONS[:2]:
            testing.alone_everywhere(act, ["weight_noise"], 13, "reg.weight_noise.std=0.2", layouts=testing.LAYOUTS[:2])
        testing.alone_everywhere("relu", ["weight_noise", "dropout"], 7, "batch_size=7", layouts=testing.LAYOUTS[2:])


# ---- a config directory: _target_ names the module -----------------------------------------------
TORCH_GAUSSIAN = '''
"""Gaussian dropout written only in its torch form: the generic path's twin of gaussian_dropout."""
import math
from dataclasses import dataclass

from dropbench.regs.base import PROB, Regularizer, param


@dataclass(frozen=True)
class Config:
    p: float = param(0.5, PROB)


class TorchGaussian(Regularizer):
    name = "torch_gaussian"
    order = 310
    slot = "activation"
    Config = Config
    shares_p = True

    def torch_forward(self, x, conf, training):
        import torch

        if not training or conf.p == 0.0:
            return x
        return x * (1 + math.sqrt(conf.p / (1.0 - conf.p)) * torch.randn_like(x))


REGULARIZER = TorchGaussian()
'''


def config_dir(root: Path, module: str = "my_gaussian", yaml_text: str | None = None) -> Path:
    d = root / "conf"
    (d / "reg").mkdir(parents=True)
    (d / f"{module}.py").write_text(TORCH_GAUSSIAN)
    (d / "reg" / "torch_gaussian.yaml").write_text(yaml_text if yaml_text is not None else textwrap.dedent(f"""\
        # Gaussian dropout, torch form only
        _target_: {module}
        torch_gaussian:
          p: ${{p}}
        """))
    return d


def test_a_config_dir_plugin_is_listed_and_runs_as_its_built_in_twin(tmp_path):
    d = config_dir(tmp_path)
    p = cli("groups", "--config-dir", str(d))
    assert p.returncode == 0, p.stderr
    assert f"torch_gaussian [config dir {d}]" in p.stdout
    out = tmp_path / "r"
    p = cli("run", "--config-dir", str(d), "-m", "reg=torch_gaussian,gaussian_dropout", "p=0.3", "epochs=10", "eval_every=5",
            f"out={out}", "-q")
    assert p.returncode == 0, p.stderr
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv").set_index("reg")
    assert runs.loc["torch_gaussian", "final_test_mse"] == runs.loc["gaussian_dropout", "final_test_mse"]
    # --from trains a plug-in's stored run only where the plug-in is configured
    (run_dir,) = [r for r in (out / "runs").iterdir() if yaml.safe_load((r / "config.yaml").read_text())["reg"].get("torch_gaussian")]
    p = cli("run", "--from", str(run_dir), "--cfg")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "names reg=torch_gaussian, which is no option here" in p.stderr and "--config-dir" in p.stderr
    p = cli("run", "--config-dir", str(d), "--from", str(run_dir), "--cfg")
    assert p.returncode == 0 and "torch_gaussian" in p.stdout, p.stderr


@pytest.mark.parametrize("yaml_text, says", [
    ("torch_gaussian:\n  p: 0.1\n", "names no plug-in module: add a top-level line _target_: mypackage.module"),
    ("_target_: no_such_module_here\ntorch_gaussian:\n  p: 0.1\n", "cannot import no_such_module_here: ModuleNotFoundError"),
    ("_target_: my_gaussian\ndropout:\n  p: 0.1\n", "a regularizer's YAML holds its keys under torch_gaussian: (found dropout)"),
])
def test_a_broken_config_dir_is_one_line(tmp_path, yaml_text, says):
    d = config_dir(tmp_path, yaml_text=yaml_text)
    p = cli("run", "--config-dir", str(d), "reg=torch_gaussian", "epochs=2", "--cfg")
    assert p.returncode == 2 and says in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_a_plugin_named_as_a_built_in_is_refused(tmp_path):
    d = config_dir(tmp_path)
    (d / "reg" / "torch_gaussian.yaml").unlink()
    (d / "reg" / "dropout.yaml").write_text("_target_: my_gaussian\ndropout:\n  p: 0.1\n")
    p = cli("groups", "--config-dir", str(d))
    assert p.returncode == 2 and "reg=dropout is already built-in's: rename it" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_no_such_config_dir_is_one_line(tmp_path):
    p = cli("run", "--config-dir", str(tmp_path / "nope"), "--cfg")
    assert p.returncode == 2 and "no such directory" in p.stderr and len(p.stderr.strip().splitlines()) == 1


# ---- results are data: a folder never imports what it names ------------------------------------
def test_a_results_folder_naming_a_module_imports_nothing(tmp_path, monkeypatch):
    """A stored config naming a plug-in module (a `_target_`, an unknown regularizer) is refused in
    one line by --from and --resume, and report reads the folder; the module is never imported."""
    sentinel = tmp_path / "imported"
    (tmp_path / "evil_plugin.py").write_text(f"open({str(sentinel)!r}, 'w').write('imported')\n")
    out = tmp_path / "r"
    p = cli("run", "reg=dropout", "epochs=4", "eval_every=2", f"out={out}", "-q")
    assert p.returncode == 0, p.stderr
    (run_dir,) = (out / "runs").iterdir()
    conf = yaml.safe_load((run_dir / "config.yaml").read_text())
    conf["_target_"] = "evil_plugin"
    conf["reg"] = {"evil": {"_target_": "evil_plugin", "p": 0.5}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(conf))
    sweep = yaml.safe_load((out / "sweep.yaml").read_text())
    text = (out / "sweep.yaml").read_text().replace("reg=dropout", "reg=evil")
    assert text != (out / "sweep.yaml").read_text(), sweep
    (out / "sweep.yaml").write_text(text)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    p = cli("run", "--from", str(run_dir), cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "evil" in p.stderr, p.stderr
    p = cli("run", "--resume", str(out), cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "reg=evil" in p.stderr, p.stderr
    p = cli("report", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not sentinel.exists(), "a results folder made dropbench import a module"


# ---- the generic path ---------------------------------------------------------------------------
def _twin():
    module = sys.modules.get("torch_gaussian_twin")
    if module is None:
        module = types.ModuleType("torch_gaussian_twin")
        sys.modules[module.__name__] = module  # dataclasses look their module up there
        exec(compile(TORCH_GAUSSIAN, module.__name__, "exec"), module.__dict__)
    return module.TorchGaussian


def test_the_generic_path_gives_the_hand_written_pieces_numbers():
    """gaussian_dropout re-implemented in its torch form only: in the batched engine, through the
    generic path, its runs are the hand-written piece's (float64 to rounding; in practice the same
    bits, which scripts/bench_generic.py reports), in any chunk and beside other regularizers."""
    from dropbench.engines.batched import _train_chunk

    with registration.registered(_twin()) as name:
        for extra in ([], ["reg.l2.weight_decay=1e-3"]):
            twin = testing.combo_cfgs([name, *(["l2"] if extra else [])], *extra, seeds=(0, 1, 2))
            built = testing.combo_cfgs(["gaussian_dropout", *(["l2"] if extra else [])], *extra, seeds=(0, 1, 2))
            for a, b in zip(_train_chunk(twin, 3), _train_chunk(built, 3)):
                assert testing.curve_err(a, b) < 1e-12


def test_check_regularizer_catches_a_regularizer_that_draws_in_eval_mode():
    Twin = _twin()

    class Leaky(Twin):
        name = "leaky"

        def torch_forward(self, x, conf, training):
            return super().torch_forward(x, conf, True)  # noise in eval mode too: a bug

    with pytest.raises(AssertionError, match="leaky draws in eval mode"):
        testing.check_regularizer(Leaky, pairs=False, invariance=False)
    assert "leaky" not in regs.REGISTRY


def test_a_regularizer_the_generic_path_cannot_train_is_refused_in_one_line():
    """A torch form whose module learns parameters needs a hand-written piece: one line, engine=torch."""
    from dropbench import runner

    class Learns(_twin()):
        name = "learns"

        def torch_layer(self, conf):
            from torch import nn

            layer = nn.Linear(1, 1)  # parameters of its own
            return layer

    with registration.registered(Learns) as name:
        with pytest.raises(UserError, match="learns parameters of its own.*run it with engine=torch") as e:
            runner._check_inputs([testing.combo_cfgs([name], seeds=(0,))[0]])
        assert "\n" not in str(e.value)
        cfg = testing._load([f"reg={name}", "engine=torch"])
        runner._check_inputs([cfg])  # the reference engine runs it


def test_a_drawing_torch_form_off_the_cpu_is_refused_in_one_line():
    """On a GPU a torch form draws from the device's generator, which cannot be each run's own."""
    import dataclasses

    from dropbench.engines.generic import unsupported

    with registration.registered(_twin()) as name:
        cfg = testing._load([f"reg={name}"])
        assert unsupported(cfg) is None
        why = unsupported(dataclasses.replace(cfg, device="cuda"))
        assert why is not None and "engine=torch, or device=cpu" in why and "\n" not in why


def test_a_bad_plugin_declaration_is_one_line():
    class NoOrder(_twin()):
        name = "no_order"
        order = 10  # dropout's

    with pytest.raises(UserError, match=r"reg=no_order \(python\): order 10 is taken by dropout; choose an unused one"):
        registration.register(NoOrder)
    assert "no_order" not in regs.REGISTRY


# ---- a model plug-in ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TinyConfig:
    name: Literal["tiny"] = "tiny"
    width: int = param(8, POSITIVE)


class TinyModel:
    """A model plug-in: one tanh hidden layer of `width` units (it places no regularizer)."""

    Config = TinyConfig

    @staticmethod
    def build(n_in: int, n_out: int, conf: TinyConfig, reg: object) -> torch.nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(n_in, conf.width), nn.Tanh(), nn.Linear(conf.width, n_out))


def test_a_model_plugin_passes_the_checks_and_trains_in_the_batched_engine():
    assert testing.check_model(TinyModel) == "tiny"
    from dropbench import models

    assert "tiny" not in models.REGISTRY


def test_the_docs_worked_example_is_the_example_package_verbatim():
    """docs/plugins.md shows the example's files word for word, so the tests above keep it true."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = [chunk.partition("\n")[2] for chunk in text.split("## Worked example", 1)[1].split("```")[1::2]]
    for f in ("pyproject.toml", "dropbench_weightnoise/weight_noise.py", "dropbench_weightnoise/sinc.py"):
        assert (EXAMPLE / f).read_text() in blocks, f


def test_the_library_api_takes_a_config_dir_as_the_command_does(tmp_path):
    """db.run(config_dir=...) registers the directory's plug-ins, as run --config-dir does (a fresh
    process: registering changes the process's registries)."""
    d = config_dir(tmp_path)
    out = tmp_path / "r"
    code = ("import dropbench as db\n"
            f"s = db.run('reg=torch_gaussian,gaussian_dropout', 'p=0.3', 'epochs=10', 'eval_every=5', multirun=True, "
            f"out={str(out)!r}, config_dir={str(d)!r})\n"
            "r = s.runs.set_index('reg')['final_test_mse']\n"
            "print(r['torch_gaussian'] == r['gaussian_dropout'])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stderr
