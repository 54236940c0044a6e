import numpy as np
import pytest
import torch

from dropbench.config import load
from dropbench.data import load_dataset
from dropbench.errors import UserError


def test_noisy_linear_matches_seed_recipe():
    # Seed 003, verbatim, after torch.manual_seed(1).
    torch.manual_seed(1)
    N_SAMPLES = 20
    x = torch.unsqueeze(torch.linspace(-1, 1, N_SAMPLES), 1)
    y = x + 0.3 * torch.normal(torch.zeros(N_SAMPLES, 1), torch.ones(N_SAMPLES, 1))
    test_x = torch.unsqueeze(torch.linspace(-1, 1, N_SAMPLES), 1)
    test_y = test_x + 0.3 * torch.normal(torch.zeros(N_SAMPLES, 1), torch.ones(N_SAMPLES, 1))
    d = load_dataset(load(["seed=1"]))
    for ours, theirs in zip((d.x_train, d.y_train, d.x_test, d.y_test), (x, y, test_x, test_y)):
        assert torch.equal(ours, theirs)


def test_data_does_not_touch_global_rng():
    torch.manual_seed(5)
    a = torch.rand(3)
    torch.manual_seed(5)
    load_dataset(load(["seed=2"]))
    assert torch.equal(torch.rand(3), a)


def test_data_seed_overrides_run_seed():
    a = load_dataset(load(["seed=3", "data.seed=7"]))
    b = load_dataset(load(["seed=7"]))
    assert torch.equal(a.y_train, b.y_train)


@pytest.mark.parametrize("name, n_feat", [("noisy_sine", 1), ("friedman1", 10), ("diabetes", 10)])
def test_other_datasets_are_seeded(name, n_feat):
    a = load_dataset(load([f"data={name}", "seed=1"]))
    b = load_dataset(load([f"data={name}", "seed=1"]))
    c = load_dataset(load([f"data={name}", "seed=2"]))
    assert a.n_features == n_feat
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    assert a.y_train.shape[1] == 1 and torch.isfinite(a.x_train).all()


def test_diabetes_is_standardised_on_train():
    d = load_dataset(load(["data=diabetes"]))
    assert len(d.x_train) + len(d.x_test) == 442
    assert torch.allclose(d.x_train.mean(0), torch.zeros(10), atol=1e-5)
    assert abs(d.y_train.std(unbiased=False).item() - 1) < 1e-4


def test_csv_dataset(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    f = tmp_path / "d.csv"
    f.write_text("a,b,t\n" + "\n".join(f"{a},{b},{a - b}" for a, b in x))
    d = load_dataset(load(["data=csv", f"data.path={f}", "data.target=t", "data.test_fraction=0.25"]))
    assert d.x_train.shape == (30, 2) and d.x_test.shape == (10, 2)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("a,b\n1,2\n3,4\n", "no such column"),
        ("a,t\nx,1\ny,2\n", "not numeric"),
        ("a,t\n1,\n2,3\n", "missing"),
        ("", "not a readable CSV"),
        ('a,t\n1,2\n"3,4\n', "not a readable CSV"),
        ("a,t\n", "has a header but no data rows"),
        ("a,t\n1,2\n3,4\n", "data has 2 rows: data.test_fraction=0.25 leaves 1 training and 1 test row"),
        ("a,t\n1,2\n", "data has 1 rows: data.test_fraction=0.25 leaves 0 training and 1 test row"),
    ],
)
def test_bad_csv_gives_user_error(tmp_path, text, msg):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(UserError, match=msg):
        load_dataset(load(["data=csv", f"data.path={f}", "data.target=t"]))


def test_too_small_to_split_says_how_to_fix_it(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,t\n" + "".join(f"{i},{i}\n" for i in range(6)))
    with pytest.raises(UserError, match=r"6 rows: .*leaves 1 training and 5 test.* at least 2 training rows and 1 test row; add rows or lower data.test_fraction"):
        load_dataset(load(["data=csv", f"data.path={f}", "data.target=t", "data.test_fraction=0.8"]))
    d = load_dataset(load(["data=csv", f"data.path={f}", "data.target=t", "data.test_fraction=0.5"]))
    assert (len(d.x_train), len(d.x_test)) == (3, 3)
    with pytest.raises(UserError, match="data has 442 rows: .*leaves 0 training"):
        load_dataset(load(["data=diabetes", "data.test_fraction=0.999"]))


def test_a_csv_edited_after_planning_is_refused(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,t\n" + "".join(f"{i},{i}\n" for i in range(8)))
    cfg = load(["data=csv", f"data.path={f}", "data.target=t"])
    assert len(load_dataset(cfg).x_train) == 6
    f.write_text("a,t\n" + "".join(f"{i},{-i}\n" for i in range(8)))
    with pytest.raises(UserError, match="the file changed after the run was planned"):
        load_dataset(cfg)


# ---- data.holdout=validation (dropbench tune's search phase) --------------------------------------
@pytest.mark.parametrize("name", ["friedman1", "diabetes"])
def test_the_validation_holdout_is_the_last_20_percent_of_the_training_rows(name):
    """The rows trained on are the first int(0.8 n) training rows in the split's order, the test
    rows the rest; standardised with the rows trained on (so they have mean 0, SD 1)."""
    full = load_dataset(load([f"data={name}", "data.standardize=false"]))
    held = load_dataset(load([f"data={name}", "data.standardize=false", "data.holdout=validation"]))
    n = len(full.x_train)
    k = int(0.8 * n)
    assert torch.equal(held.x_train, full.x_train[:k]) and torch.equal(held.y_train, full.y_train[:k])
    assert torch.equal(held.x_test, full.x_train[k:]) and torch.equal(held.y_test, full.y_train[k:])
    z = load_dataset(load([f"data={name}", "data.holdout=validation"]))
    assert torch.allclose(z.x_train.mean(0), torch.zeros(z.n_features), atol=1e-5)
    assert abs(z.y_train.std(unbiased=False).item() - 1) < 1e-4
    x = full.x_train[:k].double()
    assert torch.allclose(z.x_test.double(), (full.x_train[k:].double() - x.mean(0)) / x.std(0, unbiased=False), atol=1e-5)


def test_csv_holdout_and_too_few_rows(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,t\n" + "\n".join(f"{i},{2 * i}" for i in range(20)))
    base = ["data=csv", f"data.path={f}", "data.target=t", "data.standardize=false"]
    full = load_dataset(load(base))
    held = load_dataset(load([*base, "data.holdout=validation"]))
    assert len(full.x_train) == 15 and len(held.x_train) == 12 and len(held.x_test) == 3
    assert torch.equal(held.x_test, full.x_train[12:])
    small = tmp_path / "s.csv"
    small.write_text("a,t\n1,2\n2,3\n3,4\n")  # 2 training rows: int(1.6) = 1 to train on
    with pytest.raises(UserError, match="data.holdout=validation: data.path=.* has 2 training row"):
        load_dataset(load(["data=csv", f"data.path={small}", "data.target=t", "data.test_fraction=0.3", "data.holdout=validation"]))
