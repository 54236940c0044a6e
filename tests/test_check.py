"""dropbench check: baselines, regressions beyond seed noise, claims, JUnit, and bad input."""

import csv
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

import json

from conftest import platform, write_sweep
from dropbench.check import read_baseline
from dropbench.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def sweep(folder: Path, shift: dict[str, float] | None = None, regs=("none", "l2", "dropout"), seeds: int = 8, **extra) -> Path:
    """A noisy sweep: per seed a shared offset (the data), per group a level; `shift` scales a group."""
    level = {"none": 0.14, "l2": 0.12, "dropout": 0.11}
    offsets = [0.011, -0.02, 0.005, 0.017, -0.008, -0.013, 0.02, -0.006, 0.003, -0.011][:seeds]
    rows = []
    for reg in regs:
        for s, off in enumerate(offsets):
            noise = 0.002 * ((s * 7 + len(reg)) % 5 - 2)
            te = (level[reg] + off + noise) * (shift or {}).get(reg, 1.0)
            rows.append({"reg": reg, "p": 0.5 if reg == "dropout" else "", "seed": s, "final_train_mse": 0.03, "final_test_mse": te, **extra})
    return write_sweep(folder, rows)


def check(*args: str):
    return runner.invoke(app, ["check", *args])


@pytest.fixture
def base(tmp_path):
    """A baseline recorded from the unshifted sweep."""
    f = tmp_path / "baseline.csv"
    res = check(str(sweep(tmp_path / "ref")), "--baseline", str(f), "--update-baseline")
    assert res.exit_code == 0, res.output
    return f


def test_update_baseline_records_every_group(base, tmp_path):
    rows = list(csv.DictReader(base.open()))
    assert list(rows[0]) == ["reg", "n_seeds", "test_mean", "test_std", "train_mean", "train_std", "metric", "better", "config", "platform"]
    assert {(r["metric"], r["better"]) for r in rows} == {("test_mse", "lower")}, "the default metric is recorded too"
    assert json.loads(rows[0]["config"]) == {"data": "noisy_linear", "model": "mlp", "optim": "adam", "p": "0.5", "epochs": "100"}
    assert json.loads(rows[2]["config"])["p"] == "" and json.loads(rows[0]["platform"]) == [], "hand-made runs record none"
    assert [r["reg"] for r in rows] == ["dropout", "l2", "none"]
    ref = [r for r in csv.DictReader((tmp_path / "ref" / "runs.csv").open()) if r["reg"] == "none"]
    vals = [float(r["final_test_mse"]) for r in ref]
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    none = rows[2]
    assert int(none["n_seeds"]) == 8 and float(none["test_mean"]) == pytest.approx(mean) and float(none["test_std"]) == pytest.approx(std)


def test_a_sweep_passes_against_its_own_baseline(base, tmp_path):
    res = check(str(tmp_path / "ref"), "--baseline", str(base))
    assert res.exit_code == 0, res.output
    assert "check passed: 3 group(s)" in res.stdout


def test_a_worsened_group_fails(base, tmp_path):
    res = check(str(sweep(tmp_path / "worse", {"l2": 1.3})), "--baseline", str(base))
    assert res.exit_code == 1
    assert "WORSE" in res.stdout and "check failed: 1 of 3 group(s) failed (reg=l2: WORSE)" in res.stderr


def test_small_or_noisy_changes_pass(base, tmp_path):
    assert check(str(sweep(tmp_path / "a", {"l2": 1.03})), "--baseline", str(base)).exit_code == 0, "within rtol"
    # +12% on 3 seeds: beyond the 5% tolerance, but not beyond seed noise at alpha=0.01.
    res = check(str(sweep(tmp_path / "b", {"l2": 1.12}, seeds=3)), "--baseline", str(base))
    assert res.exit_code == 0 and "within seed noise" in res.stdout, res.output
    # ... whereas a tighter tolerance alone never fails a group that Welch cannot tell apart.
    assert check(str(tmp_path / "b"), "--baseline", str(base), "--rtol", "0").exit_code == 0
    # and a better group passes with a hint.
    res = check(str(sweep(tmp_path / "c", {"none": 0.7})), "--baseline", str(base))
    assert res.exit_code == 0 and "better" in res.stdout


def test_missing_groups_fail_and_new_groups_are_listed(base, tmp_path):
    res = check(str(sweep(tmp_path / "m", regs=("none", "dropout"))), "--baseline", str(base))
    assert res.exit_code == 1 and "reg=l2: missing" in res.stderr
    rows = [{"reg": "droppath", "seed": s, "final_train_mse": 0.0, "final_test_mse": 0.1} for s in range(3)]
    extra = sweep(tmp_path / "n")
    write_sweep(extra, list(csv.DictReader((extra / "runs.csv").open())) + rows)
    res = check(str(extra), "--baseline", str(base))
    assert res.exit_code == 0 and "new" in res.stdout, res.output


def test_failed_runs_fail_the_check_and_block_a_baseline(base, tmp_path):
    d = sweep(tmp_path / "f")
    rows = list(csv.DictReader((d / "runs.csv").open()))
    rows[0].update(status="failed", final_test_mse="nan", final_train_mse="nan")
    write_sweep(d, rows)
    res = check(str(d), "--baseline", str(base))
    assert res.exit_code == 1 and "failed runs" in res.stderr
    res = check(str(d), "--baseline", str(tmp_path / "new.csv"), "--update-baseline")
    assert res.exit_code == 2 and "cannot record a baseline" in res.stderr and not (tmp_path / "new.csv").exists()


def test_expectations(base, tmp_path):
    d = str(tmp_path / "ref")
    ok = check(d, "--baseline", str(base), "--expect", "dropout < none", "--expect", "none > reg=l2")
    assert ok.exit_code == 0 and "2 expectation(s) hold" in ok.stdout and "paired t-test over 8 seeds" in ok.stdout
    bad = check(d, "--baseline", str(base), "--expect", "none < dropout")
    assert bad.exit_code == 1 and "1 expectation(s) do not hold (none < dropout)" in bad.stderr
    for text, says in (("dropout <", "a side is empty"), ("drop < none", "no group matches 'drop'"),
                       ("dropout = none", "write one comparison"), ("x=1 < none", "x is not a group key"),
                       ("none < none", "both sides name the same group")):
        res = check(d, "--baseline", str(base), "--expect", text)
        assert res.exit_code == 2 and says in res.stderr, (text, res.stderr)


def test_an_ambiguous_side_is_an_error(tmp_path):
    rows = [{"reg": "dropout", "p": p, "seed": s, "final_train_mse": 0.0, "final_test_mse": 0.1 + p + s / 100}
            for p in (0.1, 0.5) for s in range(3)]
    rows += [{"reg": "none", "seed": s, "final_train_mse": 0.0, "final_test_mse": 1.0 + s / 50} for s in range(3)]
    d = write_sweep(tmp_path / "amb", rows)
    res = check(str(d), "--baseline", str(tmp_path / "b.csv"), "--update-baseline", "--expect", "dropout < none")
    assert res.exit_code == 2 and "'dropout' matches 2 groups" in res.stderr and not (tmp_path / "b.csv").exists()
    res = check(str(d), "--baseline", str(tmp_path / "b.csv"), "--update-baseline", "--expect", "p=0.1 < p=0.5",
                "--expect", "dropout,p=0.5 < none")
    assert res.exit_code == 0, res.output
    assert read_baseline(tmp_path / "b.csv")[0] == ["reg", "p"]


def test_junit_lists_each_group_and_claim(base, tmp_path):
    xml = tmp_path / "junit.xml"
    res = check(str(sweep(tmp_path / "w", {"none": 1.4})), "--baseline", str(base), "--expect", "dropout < none", "--junit", str(xml))
    assert res.exit_code == 1
    suite = ET.parse(xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["reg=dropout", "reg=l2", "reg=none", "dropout < none"]
    assert [c.find("failure") is not None for c in cases] == [False, False, True, False]
    assert suite.get("tests") == "4" and suite.get("failures") == "1"


@pytest.mark.parametrize("content, says", [
    (None, "not found; create it with"),
    ("", "is empty"),
    ("reg,mean\nnone,1\n", "lacks column(s) n_seeds, test_mean, test_std, train_mean, train_std"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std\nnone,3,abc,0.1,0.1,0.1\n", "test_mean='abc' is not a number"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std\nnone,3,0.1,0.1\n", "has 4 fields where the header has 6"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std\nnone,3,0.1,0.1,0.1,0.1\nnone,3,0.1,0.1,0.1,0.1\n", "appears twice"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std\n", "lists no groups"),
    ("model.width,n_seeds,test_mean,test_std,train_mean,train_std\n64,3,0.1,0.1,0.1,0.1\n", "no column model.width"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std,metric,better\nnone,3,0.1,0.1,0.1,0.1,test_ll,sideways\n",
     "better='sideways' must be higher or lower"),
    ("reg,n_seeds,test_mean,test_std,train_mean,train_std,metric,better\nnone,3,0.1,0.1,0.1,0.1,test_mse,lower\n"
     "l2,3,0.1,0.1,nan,nan,test_ll,higher\n", "mixes metrics: test_ll (higher is better) and test_mse (lower is better)"),
])
def test_bad_baselines_exit_2_with_one_line(tmp_path, content, says):
    d = sweep(tmp_path / "s")
    f = tmp_path / "b.csv"
    if content is not None:
        f.write_text(content)
    res = check(str(d), "--baseline", str(f), "--junit", str(tmp_path / "j.xml"))
    assert res.exit_code == 2 and says in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "j.xml").exists(), "nothing is written on unusable input"


def test_a_baseline_the_csv_module_refuses_or_cannot_read_is_one_line(tmp_path, monkeypatch):
    """Damage below the rows' level (a cell past the csv module's field limit, bytes that are not
    text, a file this user may not read) is one line too, worded as the baseline's, not a traceback."""
    d = sweep(tmp_path / "s")
    f = tmp_path / "b.csv"
    header = "reg,n_seeds,test_mean,test_std,train_mean,train_std\n"
    f.write_text(header + '"' + "x" * 200_000 + '",3,0.1,0.1,0.1,0.1\n')
    res = check(str(d), "--baseline", str(f))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"baseline {f} is not a valid CSV (field larger than field limit" in res.stderr and "create it with" in res.stderr
    f.write_bytes(b"\xff\xfe\x00garbage")
    res = check(str(d), "--baseline", str(f))
    assert res.exit_code == 2 and f"baseline {f} is not a text CSV; create it with" in res.stderr and res.stderr.count("\n") == 1

    f.write_text(header + "none,3,0.1,0.1,0.1,0.1\n")
    real_open = Path.open

    def refuse(self, *a, **kw):
        if self == f:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", refuse)
    res = check(str(d), "--baseline", str(f))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"baseline {f} cannot be read (Permission denied); check its permissions (ls -l {f})" in res.stderr


def test_bad_options(base, tmp_path):
    d = str(tmp_path / "ref")
    for args, says in ((["--alpha", "1.5"], "invalid --alpha 1.5"), (["--rtol", "-1"], "invalid --rtol -1.0"),
                       (["--by", "reg"], "--by only applies with --update-baseline")):
        res = check(d, "--baseline", str(base), *args)
        assert res.exit_code == 2 and says in res.stderr, res.stderr
    assert check(str(tmp_path / "nope"), "--baseline", str(base)).exit_code == 2


def test_the_committed_ci_baseline_is_usable():
    keys, rows = read_baseline(REPO / "results" / "baselines" / "ci_sweep.csv")
    assert keys == ["reg"] and [r["reg"] for r in rows] == ["dropout", "droppath", "l1", "l2", "none"]
    assert all(r["n_seeds"] == 20 for r in rows)
    assert all((r["metric"], r["better"]) == ("test_mse", "lower") for r in rows), "no metric column: test MSE"
    assert "results/baselines/ci_sweep.csv" in (REPO / "scripts" / "ci_check.sh").read_text()
    assert "scripts/ci_check.sh" in (REPO / ".ci" / "run").read_text()


def test_a_sweep_of_another_config_is_refused(base, tmp_path):
    """The issue's 200-epoch sweep checked against a 500-epoch baseline (here 100)."""
    res = check(str(sweep(tmp_path / "e", epochs=200)), "--baseline", str(base), "--junit", str(tmp_path / "j.xml"))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "group reg=dropout ran epochs=200 but baseline" in res.stderr and "recorded epochs=100" in res.stderr
    assert "--update-baseline" in res.stderr and not (tmp_path / "j.xml").exists()


def test_an_old_baseline_without_config_is_read_with_a_note(base, tmp_path):
    rows = list(csv.DictReader(base.open()))
    old = tmp_path / "old.csv"
    old.write_text("reg,n_seeds,test_mean,test_std,train_mean,train_std\n"
                   + "".join(f"{r['reg']},{r['n_seeds']},{r['test_mean']},{r['test_std']},{r['train_mean']},{r['train_std']}\n" for r in rows))
    keys, read = read_baseline(old)
    assert keys == ["reg"] and read[0]["config"] is None and read[0]["platform"] is None
    res = check(str(sweep(tmp_path / "e", epochs=200)), "--baseline", str(old))
    assert res.exit_code == 0 and "records no config" in res.stdout, res.output


def with_column(folder: Path, column: str, by_reg: dict[str, str]) -> Path:
    """The sweep's runs.csv with one more config column, its value per regularizer ("" elsewhere:
    the key does not apply to that run)."""
    rows = [{**r, column: by_reg.get(r["reg"], "")} for r in csv.DictReader((folder / "runs.csv").open())]
    return write_sweep(folder, rows)


EVERY_REG = ("none", "l2", "dropout")
# Keys added after a baseline could be recorded: at another value than their default, a sweep is
# another experiment, though the baseline never recorded the key.
NEWER_KEYS = [
    ("batch_size", dict.fromkeys(EVERY_REG, "32"), dict.fromkeys(EVERY_REG, ""), "reg=dropout ran batch_size=32", "batch_size=null"),
    ("model.init", dict.fromkeys(EVERY_REG, "lecun_normal"), dict.fromkeys(EVERY_REG, "default"),
     "reg=dropout ran model.init=lecun_normal", "model.init=default"),
    ("eval.mc_samples", dict.fromkeys(EVERY_REG, "10"), dict.fromkeys(EVERY_REG, "0"), "reg=dropout ran eval.mc_samples=10", "eval.mc_samples=0"),
    ("eval.tau", dict.fromkeys(EVERY_REG, "0.1"), dict.fromkeys(EVERY_REG, ""), "reg=dropout ran eval.tau=0.1", "eval.tau=null"),
    ("reg.l2.biases", {"l2": "False"}, {"l2": "True"}, "reg=l2 ran reg.l2.biases=False", "reg.l2.biases=True"),
]


@pytest.mark.parametrize("column, other, default, ran, recorded", NEWER_KEYS, ids=[k[0] for k in NEWER_KEYS])
def test_a_key_the_baseline_predates_is_compared_with_its_default(base, tmp_path, column, other, default, ran, recorded):
    """The baseline records no such column: its runs ran the key's default, so a sweep at another
    value is refused in the usual one line; a sweep at the default passes."""
    assert column not in json.loads(next(csv.DictReader(base.open()))["config"])
    res = check(str(with_column(sweep(tmp_path / "other"), column, other)), "--baseline", str(base))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert f"group {ran} but baseline {base} predates {column} (its runs ran the default, {recorded});" in res.stderr
    assert "--update-baseline" in res.stderr
    res = check(str(with_column(sweep(tmp_path / "same"), column, default)), "--baseline", str(base))
    assert res.exit_code == 0 and "check passed" in res.stdout, res.output


def test_a_key_the_sweep_predates_is_compared_with_its_default(tmp_path):
    """The other way round: a baseline of model.init=lecun_normal, a sweep from before the key."""
    f = tmp_path / "b.csv"
    assert check(str(with_column(sweep(tmp_path / "ref"), "model.init", dict.fromkeys(EVERY_REG, "lecun_normal"))),
                 "--baseline", str(f), "--update-baseline").exit_code == 0
    res = check(str(sweep(tmp_path / "old")), "--baseline", str(f))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert ("group reg=dropout ran model.init=default (the default: this sweep predates the key) "
            f"but baseline {f} recorded model.init=lecun_normal;") in res.stderr


def test_a_key_this_dropbench_does_not_know_is_not_compared(base, tmp_path):
    """Another version's key has no default here to compare with."""
    res = check(str(with_column(sweep(tmp_path / "new"), "model.future_knob", dict.fromkeys(EVERY_REG, "7"))), "--baseline", str(base))
    assert res.exit_code == 0, res.output


def test_a_nan_score_cannot_become_a_baseline(tmp_path):
    d = sweep(tmp_path / "nan")
    rows = list(csv.DictReader((d / "runs.csv").open()))
    rows[3].update(final_test_mse="nan")  # stored ok, as a run whose loss became NaN at the end
    write_sweep(d, rows)
    res = check(str(d), "--baseline", str(tmp_path / "b.csv"), "--update-baseline")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "group reg=none has a non-finite test MSE (run r003: final_test_mse=nan)" in res.stderr
    assert not (tmp_path / "b.csv").exists()


def test_a_change_beyond_the_tolerance_is_never_called_within(base, tmp_path):
    from dropbench.check import run_check

    details = {v.label: (v.verdict, v.detail) for v in run_check(sweep(tmp_path / "lower", {"l2": 0.91}, seeds=3), base).verdicts}
    verdict, detail = details["reg=l2"]
    assert verdict == "ok" and "within 5%" not in detail and "±" not in detail, detail
    assert re.fullmatch(r"test MSE -1\d\.\d%, lower by more than 5% but within seed noise \(Welch p=0\.\d+ >= 0\.01\)", detail), detail
    small = {v.label: v.detail for v in run_check(sweep(tmp_path / "small", {"l2": 1.02}), base).verdicts}
    assert small["reg=l2"] == "test MSE +2.0%, within ±5%"


def test_a_check_across_platforms_warns(tmp_path):
    f = tmp_path / "b.csv"
    assert check(str(sweep(tmp_path / "a", **platform(capability="AVX512"))), "--baseline", str(f), "--update-baseline").exit_code == 0
    assert json.loads(next(csv.DictReader(f.open()))["platform"]) == [
        {"torch_version": "2.13.0", "cpu": "Some CPU", "cpu_capability": "AVX512", "device": "", "gpu": "", "runs": 8}]
    same = check(str(tmp_path / "a"), "--baseline", str(f))
    assert same.exit_code == 0 and "WARNING" not in same.stdout
    other = check(str(sweep(tmp_path / "b", **platform(capability="AVX2"))), "--baseline", str(f), "--junit", str(tmp_path / "j.xml"))
    out = " ".join(other.stdout.split())
    assert other.exit_code == 0 and "WARNING: these numbers come from 2 platforms" in out, other.output
    assert "AVX2, cpu: 24 runs of the sweep" in out and "AVX512, cpu: 24 baseline runs" in out


def test_splits_are_repetitions_for_baselines_and_claims(tmp_path):
    """A UCI-style sweep over splits (one seed): groups pool the splits, claims pair on them."""
    rows = [{**r, "data": "uci", "data.dataset": "yacht", "data.split": r["seed"], "seed": 0}
            for r in csv.DictReader(sweep(tmp_path / "s").joinpath("runs.csv").open())]
    d = write_sweep(tmp_path / "splits", rows)
    f = tmp_path / "b.csv"
    assert check(str(d), "--baseline", str(f), "--update-baseline").exit_code == 0
    recorded = list(csv.DictReader(f.open()))
    assert [(r["reg"], r["n_seeds"]) for r in recorded] == [("dropout", "8"), ("l2", "8"), ("none", "8")]
    res = check(str(d), "--baseline", str(f), "--expect", "l2 < none")
    assert res.exit_code == 0 and "paired t-test over 8 splits" in res.stdout, res.stdout


# ---- --metric: a baseline of another result column ------------------------------------------------

def uci_sweep(folder: Path, ll_shift: dict[str, float] | None = None, **kw) -> Path:
    """sweep()'s runs with the UCI columns: RMSE = 2·√MSE and a log-likelihood of -10·MSE (so a
    lower MSE is a higher log-likelihood), the log-likelihood moved by ll_shift per group."""
    rows = list(csv.DictReader(sweep(folder, **kw).joinpath("runs.csv").open()))
    for r in rows:
        te = float(r["final_test_mse"])
        r.update(final_test_rmse=2 * te**0.5, final_test_ll=-10 * te + (ll_shift or {}).get(r["reg"], 0.0))
    return write_sweep(folder, rows)


def test_a_baseline_records_and_checks_the_metric_it_was_made_with(tmp_path):
    f = tmp_path / "ll.csv"
    res = check(str(uci_sweep(tmp_path / "ref")), "--baseline", str(f), "--update-baseline", "--metric", "test_ll")
    assert res.exit_code == 0, res.output
    assert "test log-likelihood (mean ± std)" in res.stdout and "train" not in res.stdout.split("baseline written")[1]
    rows = list(csv.DictReader(f.open()))
    assert {(r["metric"], r["better"]) for r in rows} == {("test_ll", "higher")}, "*_ll: higher is better"
    lls = [float(r["final_test_ll"]) for r in csv.DictReader((tmp_path / "ref" / "runs.csv").open()) if r["reg"] == "none"]
    none = next(r for r in rows if r["reg"] == "none")
    assert float(none["test_mean"]) == pytest.approx(sum(lls) / len(lls)) and none["train_mean"] == "nan", "test_ll has no train side"
    same = check(str(tmp_path / "ref"), "--baseline", str(f))
    assert same.exit_code == 0 and "check passed: 3 group(s)" in same.stdout, same.output
    assert "final test log-likelihood" in " ".join(same.stdout.split())
    # l2's log-likelihood 0.3 lower on every seed (about -20%): worse, though its MSE did not move.
    worse = check(str(uci_sweep(tmp_path / "w", {"l2": -0.3})), "--baseline", str(f), "--metric", "test_ll")
    assert worse.exit_code == 1 and "(reg=l2: WORSE)" in worse.stderr, worse.output
    from dropbench.check import run_check

    detail = {v.label: v.detail for v in run_check(tmp_path / "w", f).verdicts}["reg=l2"]
    assert re.fullmatch(r"test log-likelihood -\d+\.\d% \(lower by more than 5%\), Welch p=\S+ < 0\.01", detail), detail
    better = check(str(uci_sweep(tmp_path / "b", {"l2": 0.3})), "--baseline", str(f))
    assert better.exit_code == 0 and "better" in better.stdout, better.output
    mse = check(str(uci_sweep(tmp_path / "m", {"l2": -0.3})), "--baseline", str(base_of(tmp_path)))
    assert mse.exit_code == 0, "the MSE baseline does not see a log-likelihood change"


def base_of(tmp_path: Path) -> Path:
    """A test MSE baseline of uci_sweep's unshifted runs."""
    f = tmp_path / "mse.csv"
    if not f.exists():
        assert check(str(uci_sweep(tmp_path / "mse_ref")), "--baseline", str(f), "--update-baseline").exit_code == 0
    return f


def test_a_check_with_another_metric_than_its_baseline_is_one_line(tmp_path, base):
    f = tmp_path / "ll.csv"
    d = str(uci_sweep(tmp_path / "ref"))
    assert check(d, "--baseline", str(f), "--update-baseline", "--metric", "final_test_ll").exit_code == 0
    for args, says in (
        (["--baseline", str(f), "--metric", "test_mse"], f"baseline {f} was recorded with --metric test_ll but this check asks for --metric test_mse"),
        (["--baseline", str(f), "--better", "lower"], "--metric test_ll --better higher but this check asks for --better lower"),
        (["--baseline", str(base), "--metric", "test_rmse"], "recorded with --metric test_mse but this check asks for --metric test_rmse"),
        (["--baseline", str(f), "--better", "up"], "unknown --better 'up'"),
        (["--baseline", str(tmp_path / "n.csv"), "--update-baseline", "--metric", "test_mc_rmse"], "unknown --metric 'test_mc_rmse'"),
    ):
        res = check(d, *args, "--junit", str(tmp_path / "j.xml"))
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and says in res.stderr, (args, res.stderr)
        assert not (tmp_path / "j.xml").exists() and not (tmp_path / "n.csv").exists()
    # The baseline's own metric, named or not, is no error; nor is an old baseline (test MSE) checked as such.
    assert check(d, "--baseline", str(f), "--metric", "test_ll", "--better", "higher").exit_code == 0
    assert check(d, "--baseline", str(base), "--metric", "test_mse").exit_code == 0


def test_expectations_compare_the_baselines_metric(tmp_path):
    """With test_ll (= -10·MSE here), "dropout > none" holds: < and > compare the metric's means."""
    d = uci_sweep(tmp_path / "ref")
    f = tmp_path / "ll.csv"
    res = check(str(d), "--baseline", str(f), "--update-baseline", "--metric", "test_ll", "--expect", "dropout > none")
    assert res.exit_code == 0 and "paired t-test over 8 seeds" in res.stdout, res.output
    assert "expectations (higher test log-likelihood is better" in " ".join(res.stdout.split())
    res = check(str(d), "--baseline", str(f), "--expect", "dropout < none")
    assert res.exit_code == 1 and "1 expectation(s) do not hold (dropout < none)" in res.stderr
    assert check(str(d), "--baseline", str(base_of(tmp_path)), "--expect", "dropout < none").exit_code == 0
