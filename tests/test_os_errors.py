"""OS and platform errors are user errors: a read-only folder, a full disk, a permission error or
a missing cluster is one line (what, where, the fix), exit 2, and leaves the folder as it was.

Tests run as any user, root included (whom chmod does not stop), so the OS errors are injected
into the write primitives (Faults); where this process may mount a tmpfs, the real thing is
tried too (marked `mounts`)."""

import builtins
import csv
import errno
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dropbench.cli import app

SWEEP = ["-m", "reg=none,l1", "seed=range(2)", "epochs=5", "model.hidden=8"]
SAID = {errno.EROFS: "the file system is read-only; ", errno.ENOSPC: "no space left on the device; free some space",
        errno.EACCES: "permission denied; check the permissions and owner of "}


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def listing(root: Path) -> dict[str, bytes | None]:
    """Every entry under root, hidden ones included: a folder as None, a file as its bytes."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def without_seconds(folder: Path) -> list[list[str]]:
    rows = list(csv.reader((folder / "runs.csv").open()))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


class Faults:
    """Writes under `root` fail with `code`, as the OS fails them: creating a folder (mkdir),
    opening a file to write (os.open, open), renaming (os.replace); `at` picks which. Removing
    fails too where the folder is read-only or forbidden, but not where the disk is full."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, code: int, at: tuple[str, ...] = ("mkdir", "open", "replace")) -> None:
        self.root, self.code, self.at, self.on = os.path.abspath(root), code, at, True
        self.hits: list[str] = []
        mkdir, os_open, io_open, replace, rename = os.mkdir, os.open, io.open, os.replace, os.rename
        unlink, rmdir, chmod = os.unlink, os.rmdir, os.chmod
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

        def fail(kind: str, path, *more) -> None:
            if self.on and kind in self.at and any(self._under(p) for p in (path, *more)):
                self.hits.append(kind)
                raise OSError(self.code, os.strerror(self.code), os.fspath(path))

        def removing(call):
            def wrapped(path, *a, **kw):
                if self.code != errno.ENOSPC:
                    fail("mkdir", path)  # where folders cannot be made, nothing can be removed either
                return call(path, *a, **kw)
            return wrapped

        def opening(path, mode="r", *a, **kw):
            if isinstance(path, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                fail("open", path)
            return io_open(path, mode, *a, **kw)

        def os_opening(path, flags, *a, **kw):
            if flags & writes:
                fail("open", path)
            return os_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "mkdir", lambda path, *a, **kw: (fail("mkdir", path), mkdir(path, *a, **kw))[1])
        monkeypatch.setattr(os, "open", os_opening)
        monkeypatch.setattr(io, "open", opening)
        monkeypatch.setattr(builtins, "open", opening)
        monkeypatch.setattr(os, "replace", lambda src, dst, *a, **kw: (fail("replace", src, dst), replace(src, dst, *a, **kw))[1])
        monkeypatch.setattr(os, "rename", lambda src, dst, *a, **kw: (fail("replace", src, dst), rename(src, dst, *a, **kw))[1])
        monkeypatch.setattr(os, "unlink", removing(unlink))
        monkeypatch.setattr(os, "remove", removing(unlink))
        monkeypatch.setattr(os, "rmdir", removing(rmdir))
        monkeypatch.setattr(os, "chmod", removing(chmod))

    def _under(self, path) -> bool:
        if isinstance(path, int):  # a file descriptor (dir_fd): not ours to judge
            return False
        p = os.path.abspath(os.fsdecode(path))
        return p == self.root or p.startswith(self.root + os.sep)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sweep with a baseline, copied into each test's folder."""
    root = tmp_path_factory.mktemp("finished")
    out = root / "s"
    assert cli("run", *SWEEP, f"out={out}", "-q").exit_code == 0
    assert cli("check", out, "--baseline", out / "base.csv", "--update-baseline", "-q").exit_code == 0
    return out


@pytest.fixture
def folder(tmp_path, finished) -> Path:
    """tmp_path/box holds a copy of the finished sweep (box/s); writes under box fail."""
    shutil.copytree(finished, tmp_path / "box" / "s", symlinks=True)
    return tmp_path / "box"


def commands(box: Path) -> dict[str, tuple[list, str]]:
    """Each command that writes results: its arguments and the path its error must name."""
    s = box / "s"
    over = ["data=diabetes", "epochs=3", "model.hidden=8", "reg=dropout", "--over", "p=0.1,0.2"]
    return {
        "run": (["run", *SWEEP, f"out={box / 'new'}"], f"{box / 'new'}"),
        "run --append": (["run", "-m", "reg=l2", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={s}", "--append"], f"{s}"),
        "run --resume (a run to train)": (["run", "--resume", s], f"{s}"),
        "plot": (["plot", s], f"{s / 'plots'}"),
        "report -o": (["report", s, "-o", s / "report" / "r.txt"], f"{s / 'report'}"),
        "check --update-baseline": (["check", s, "--baseline", s / "b.csv", "--update-baseline"], f"{s / 'b.csv'}"),
        "check --junit": (["check", s, "--baseline", s / "base.csv", "--junit", s / "j.xml"], f"{s / 'j.xml'}"),
        "tune": (["tune", *over, f"out={box / 't'}"], f"{box / 't'}"),
    }


def error_line(res) -> str:
    """The one line of stderr that is not a progress line (dropbench: 3/4 runs done, ...)."""
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    said = [ln for ln in res.stderr.splitlines() if not re.fullmatch(r"dropbench: \d+/\d+ runs done, .*", ln)]
    assert len(said) == 1, res.stderr
    return said[0]


def _assert_one_line_error(res, code: int, path: str) -> None:
    err = error_line(res)
    assert err.startswith(f"dropbench: error: cannot write to {path}"), err
    assert SAID[code] in err, err


CASES = ["run", "run --append", "run --resume (a run to train)", "plot", "report -o", "check --update-baseline",
         "check --junit", "tune"]


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES], ids=errno.errorcode.get)
@pytest.mark.parametrize("case", CASES)
def test_a_folder_that_refuses_writes_is_one_line_and_left_as_it_was(folder, monkeypatch, case, code):
    args, path = commands(folder)[case]
    if case.startswith("run --resume"):
        victim = sorted((folder / "s" / "runs").iterdir())[0]
        shutil.rmtree(victim)  # so that resuming has a run to train and store
    before = listing(folder)
    faults = Faults(monkeypatch, folder, code)
    res = cli(*args)
    faults.on = False
    assert faults.hits, "no write was attempted"
    _assert_one_line_error(res, code, path)
    assert listing(folder) == before


@pytest.mark.parametrize("at", ["open", "replace"])
@pytest.mark.parametrize("case", ["run", "report -o", "check --update-baseline", "tune", "plot"])
def test_a_write_that_fails_late_leaves_no_temporary_file_or_new_folder(folder, monkeypatch, case, at):
    """The folders could be made but a file could not be written (a full disk), or not renamed
    into place: what was made on the way (the out folder, its lock, a temporary file) goes."""
    args, path = commands(folder)[case]
    before = listing(folder)
    faults = Faults(monkeypatch, folder, errno.ENOSPC, at=(at,))
    res = cli(*args)
    faults.on = False
    assert faults.hits == [at], faults.hits
    _assert_one_line_error(res, errno.ENOSPC, path)
    assert listing(folder) == before


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES], ids=errno.errorcode.get)
def test_a_finished_folder_is_only_read(folder, monkeypatch, code):
    """--resume of a finished sweep, or its command again, has nothing to train: nothing to write."""
    s = folder / "s"
    before = listing(folder)
    Faults(monkeypatch, folder, code)
    for args in (["run", "--resume", s], ["run", *SWEEP, f"out={s}"]):
        res = cli(*args)
        assert res.exit_code == 0 and "4 run(s) were already finished" in res.stdout, res.output
    assert listing(folder) == before


def test_a_disk_that_fills_mid_sweep_keeps_the_stored_runs_and_says_how_to_resume(folder, monkeypatch):
    from dropbench import results

    out = folder / "full"
    faults = Faults(monkeypatch, folder, errno.ENOSPC)
    faults.on = False
    write_run, stored = results.write_run, []

    def fills_after_two(o, res):
        path = write_run(o, res)
        stored.append(path)
        faults.on = len(stored) >= 2  # the third run's folder no longer fits
        return path

    monkeypatch.setattr(results, "write_run", fills_after_two)
    sweep = ["-m", "reg=none,l1", "seed=range(3)", "epochs=5", "model.hidden=8"]
    res = cli("run", *sweep, f"out={out}", "-q")
    faults.on = False
    err = [error_line(res)]
    assert err[0].startswith(f"dropbench: error: cannot write to {out}"), err
    assert err[0].endswith(f"no space left on the device; free some space, or give another out=DIR on a disk with room; "
                           f"2 of 6 runs are stored in {out}; resume with: dropbench run --resume {out}"), err
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(p.name for p in stored)  # no leftovers
    monkeypatch.setattr(results, "write_run", write_run)
    res = cli("run", "--resume", out, "-q")
    assert res.exit_code == 0, res.output
    ref = folder / "ref"
    assert cli("run", *sweep, f"out={ref}", "-q").exit_code == 0
    assert without_seconds(out) == without_seconds(ref)
    assert (out / "curves.csv").read_bytes() == (ref / "curves.csv").read_bytes()


# --- the real thing: a tmpfs mounted read-only, and one that is full ------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs at tmp_path/mnt; skips where this process may not mount."""
    mounted: list[Path] = []

    def mount(size: str = "4m") -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], capture_output=True)


def _remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


@pytest.mark.mounts
def test_a_read_only_file_system(tmpfs, finished):
    box = tmpfs()
    shutil.copytree(finished, box / "s")
    _remount(box, "ro")
    before = listing(box)
    for args in (["run", "--resume", box / "s"], ["run", *SWEEP, f"out={box / 's'}"]):
        res = cli(*args)
        assert res.exit_code == 0 and "already finished" in res.stdout, res.output
    for case, (args, path) in commands(box).items():
        if case.startswith("run --resume"):
            continue  # the finished folder has nothing to train (above)
        res = cli(*args)
        _assert_one_line_error(res, errno.EROFS, path)
    assert listing(box) == before


@pytest.mark.mounts
def test_a_full_file_system(tmpfs):
    box = tmpfs("120k")  # room for a few runs only
    out = box / "s"
    res = cli("run", "-m", "reg=none,l1,l2", "seed=range(6)", "epochs=5", "model.hidden=8", f"out={out}", "-q")
    err = error_line(res)
    assert err.startswith(f"dropbench: error: cannot write to {out}"), err
    assert SAID[errno.ENOSPC] in err and err.endswith(f"; resume with: dropbench run --resume {out}"), err
    kept = {p.name for p in (out / "runs").iterdir()}
    assert kept and not any(n.startswith(".") for n in kept)
    _remount(box, "size=4m")
    res = cli("run", "--resume", out, "-q")
    assert res.exit_code == 0, res.output
    assert len(list((out / "runs").iterdir())) == 18


def test_a_folder_without_write_permission(folder):
    """A real EACCES: a folder mode 555. Root writes there anyway, unless it runs without the
    capabilities that let it (setpriv drops them for the child)."""
    s = folder / "s"
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root ignores file modes, and setpriv (to drop that capability) is missing")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    s.chmod(0o555)
    try:
        before = listing(folder)
        for args, path, fix in (
            (["report", s, "-o", s / "r.txt"], s / "r.txt", "-o FILE"),
            (["run", "-m", "reg=l2", "seed=range(2)", "epochs=5", "model.hidden=8", f"out={s}", "--append"], s / "sweep.yaml", "out=DIR"),
        ):
            p = subprocess.run([*prefix, sys.executable, "-m", "dropbench", *map(str, args)], capture_output=True, text=True)
            if p.returncode == 0 and prefix:
                pytest.skip("setpriv could not take root's right to write anywhere here")
            assert p.returncode == 2 and p.stdout == "", p.stderr
            assert p.stderr == (f"dropbench: error: cannot write to {path}: permission denied; check the permissions and owner "
                                f"of {s} (ls -ld {s}), or give another {fix}\n")
        assert listing(folder) == before
    finally:
        s.chmod(0o755)


# --- a launcher this machine cannot use ----------------------------------------------------------


@pytest.mark.parametrize("on_path, missing", [((), "sbatch and srun are"), (("sbatch",), "srun is")])
def test_slurm_without_slurm_is_refused_before_anything_is_written(tmp_path, monkeypatch, on_path, missing):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in on_path:
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "r"
    res = cli("run", "epochs=5", "model.hidden=8", "launcher=submitit_slurm", f"out={out}")
    assert res.exit_code == 2 and res.stdout == "", res.output
    assert res.stderr == (f"dropbench: error: launcher=submitit_slurm needs SLURM, but {missing} not on PATH; run on a "
                          "SLURM login node, or use launcher=local (or launcher=submitit_local to try the cluster set-up "
                          "on this machine)\n")
    assert not out.exists()


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm"])
def test_a_launcher_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch, launcher):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    out = tmp_path / "r"
    res = cli("run", "epochs=5", f"launcher={launcher}", f"out={out}")
    assert res.exit_code == 2, res.output
    assert res.stderr == (f"dropbench: error: launcher={launcher} needs submitit, which is not installed; install the "
                          'cluster extra: pip install -e ".[cluster]" (or: pip install submitit)\n')
    assert not out.exists()


def test_a_finished_slurm_sweep_is_listed_without_slurm(tmp_path, monkeypatch, folder):
    """Nothing to train: nothing to submit, so no SLURM needed (a sweep copied off the cluster)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    res = cli("run", *SWEEP, "launcher=submitit_slurm", f"out={folder / 's'}")
    assert res.exit_code == 0 and "4 run(s) were already finished" in res.stdout, res.output
