"""Where a run's numbers came from: the software and hardware that computed them.

The same config and seed give bit-identical numbers only on the same platform: another torch
build, another CPU instruction set (torch's CPU capability: DEFAULT, AVX2, AVX512, ...) or
another device runs other kernels, whose last bits differ and which Adam then amplifies. So every
run records its platform beside its config (result.json and runs.csv), and a results folder that
would mix platforms says so.

Standard library only at import: `report` and `check` read these columns without torch.
"""

from __future__ import annotations

import platform as _platform
from functools import cache
from typing import Any, Mapping

# The columns of runs.csv / keys of result.json that describe the platform, not the config, are
# columns.PLATFORM_COLUMNS; the config's own `device` and `dtype` columns complete the picture.
# What must agree for two platforms to compute the same numbers for the same config. The CPU
# model counts as well as its instruction set: an AVX-512 Xeon and an AVX-512 EPYC, same torch,
# gave different last bits (the BLAS picks kernels and blockings by vendor and cache sizes).
# dropbench's own version is recorded, not compared.
IDENTITY_COLUMNS = ("torch_version", "cpu", "cpu_capability", "device", "gpu")


@cache
def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return _platform.processor() or _platform.machine() or "unknown"


def current(device: str) -> dict[str, str]:
    """This process's platform for a run on `device` (cpu or cuda). Imports torch."""
    import torch

    from dropbench import __version__

    gpu = ""
    if device == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
    return {
        "dropbench_version": __version__,
        "torch_version": str(torch.__version__),
        "cpu": cpu_model(),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "gpu": gpu,
    }


def identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two rows' platforms compute alike; empty strings where a row does not say
    (rows written before dropbench recorded its platform)."""
    return tuple("" if row.get(c) is None else str(row.get(c)) for c in IDENTITY_COLUMNS)


def describe(row: Mapping[str, Any]) -> str:
    """A platform in a few words: 'torch 2.13.0, AMD EPYC, CPU capability AVX512, cpu'."""
    torch_v, cpu, cap, device, gpu = identity(row)
    if not (torch_v or cap):
        return "unrecorded (written before dropbench recorded platforms)"
    where = gpu if device == "cuda" and gpu else device or "cpu"
    return f"torch {torch_v or '?'}, {cpu or 'unknown CPU'}, CPU capability {cap or '?'}, {where}"
