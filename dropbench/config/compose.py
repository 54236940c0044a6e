"""Hydra composition: conf/ and command-line overrides into plain dicts, and sweeps into jobs.

Hydra does composition and the override/sweep grammar; this module drives it (cached per choice of
config-group options, so a 1 000-seed sweep composes once), turns Hydra's and OmegaConf's errors
into one line that names the key or option and what to write instead, and expands and checks
sweeps (-m). load(), load_job() and load_sweep() are the entry points: compose, then build()
(schema.py). Kept apart because it is the only part that needs Hydra (imported lazily, so
`dropbench --help` stays fast) and because its error wording is about Hydra's grammar, not the schema.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from dropbench.config.coerce import _unknown_option_error
from dropbench.config.identity import run_id_of
from dropbench.config.rules import TABLE_KEY, _check_table_key
from dropbench.config.schema import LAUNCHERS, build, build_launcher
from dropbench.errors import UserError

if TYPE_CHECKING:
    from dropbench.config.schema import Launcher, RunConfig

GROUPS = ("data", "model", "reg", "optim", "launcher")
# conf/experiment/: whole protocols, selected with +experiment=NAME (each sets the groups above).
EXPERIMENT = "experiment"


# ---- Hydra --------------------------------------------------------------------------------
def config_dir() -> Path:
    return Path(str(resources.files("dropbench.conf")))


def list_options() -> dict[str, list[str]]:
    """Every config group and its options: conf/'s, then the plug-ins' (dropbench.plugins)."""
    root = config_dir()
    extra = plugin_origins()
    return {g: sorted(p.stem for p in (root / g).glob("*.yaml")) + sorted(extra.get(g, {})) for g in GROUPS}


def plugin_origins() -> dict[str, dict[str, str]]:
    """Each plug-in option's origin (a config directory, a package's name), by group."""
    from dropbench import data, models, plugins, regs  # noqa: F401  (loading the registries finds them)

    return plugins.origins()


def store_plugin_nodes() -> None:
    """Every plug-in's option in Hydra's ConfigStore, beside conf/'s YAMLs: its config directory's
    YAML without `_target_` (the module is imported by the registry, never by Hydra), or its
    Config's defaults."""
    from hydra.core.config_store import ConfigStore

    from dropbench import data, models, plugins, regs  # noqa: F401

    store = ConfigStore.instance()
    for group, found in plugins.FOUND.items():
        for name, f in found.items():
            store.store(group=group, name=name, node=plugins.node(f), package=group if group != "reg" else "reg")


def default_options() -> dict[str, str]:
    """Each group's default option, from the defaults list of conf/config.yaml."""
    import yaml

    entries = yaml.safe_load((config_dir() / "config.yaml").read_text())["defaults"]
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


@cache
def _hydra_ready() -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra import initialize_config_dir

    GlobalHydra.instance().clear()
    store_plugin_nodes()
    initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="dropbench")


def _dotted_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix[:-1]] if prefix else []
    return [k for key, v in d.items() for k in _dotted_keys(v, f"{prefix}{key}.")]


def _close_key(key: str, known: list[str]) -> str:
    """A did-you-mean for a dotted key: a sibling first (a shared prefix is no likeness), then any key
    whose last part is close (hidden -> model.hidden)."""
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {siblings[close[0]]}?)"
    others = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] != parent and not k.startswith("launcher.")}
    close = difflib.get_close_matches(leaf, list(others), n=1, cutoff=0.8)
    return f" (did you mean {others[close[0]]}?)" if close else ""


def _unknown_key_error(key: str, composed: dict[str, Any] | None) -> UserError:
    known = _dotted_keys(composed) if composed else []
    hint = _close_key(key, known)
    if key.startswith("launcher.") and composed and isinstance(composed.get("launcher"), dict):
        # `run --cfg` shows the run's config, which has no launcher keys: list them here.
        name = composed["launcher"].get("name")
        cls = LAUNCHERS.get(name)
        if cls is not None:
            takes = ", ".join(f.name for f in dataclasses.fields(cls) if f.name != "name") or "no keys"
            return UserError(f"unknown key {key}{hint}; launcher={name} takes: {takes}")
    if key == "optim.weight_decay":
        hint = " (weight decay is the l2 regularizer: use reg=l2 reg.l2.weight_decay=VALUE)"
    elif key.startswith("reg.") and not any(k.startswith(".".join(key.split(".")[:2]) + ".") for k in known):
        hint = " (a regularizer's keys exist only when it is selected, e.g. reg=l1 reg.l1.weight=1e-3)"
    return UserError(f"unknown key {key}{hint}; list the keys with: dropbench run --cfg")


def _friendly_hydra_error(e: Exception, overrides: list[str], composed: dict[str, Any] | None = None) -> UserError:
    """One line for a Hydra error; `composed` (the config the overrides apply to) gives the known keys."""
    msg = " ".join(str(e).split())
    experiment = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == EXPERIMENT), None)
    if experiment is not None:
        if f"'{EXPERIMENT}/" in msg and ("Could not find" in msg or "Could not load" in msg):
            return _unknown_option_error(f"+{EXPERIMENT}", experiment, sorted(p.stem for p in (config_dir() / EXPERIMENT).glob("*.yaml")))
        if "Interpolation key" in msg:  # the experiment reads a key the chosen options lack
            key = msg.split("'")[1] if "'" in msg else "?"
            data = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "data"), None)
            return UserError(f"+{EXPERIMENT}={experiment} reads {key}, which "
                             f"{f'data={data}' if data else 'this config'} does not have; drop the data= override (the experiment chooses its data set)")
    options = list_options()
    for g, opts in options.items():
        if f"'{g}/" in msg or f"config group '{g}'" in msg or f"In '{g}/" in msg:
            if "Could not find" in msg or "Could not load" in msg:
                bad = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == g), "?")
                return _unknown_option_error(g, bad, opts)
    if "not in struct" in msg or "Could not override" in msg or "Could not append" in msg:
        key = msg.split("'")[1] if "'" in msg else "?"
        return _unknown_key_error(key, composed)
    if "Ambiguous value" in msg or "sweep" in msg.lower():
        arg = next((o for o in overrides if "," in o or "(" in o), " ".join(overrides))
        return UserError(f"{arg} lists several values: to sweep over them add -m (dropbench run -m {arg})")
    if any(t in msg for t in ("Error parsing override", "mismatched input", "no viable alternative", "LexerNoViableAlt", "token recognition")):
        return UserError(f"cannot parse overrides {' '.join(overrides)!r}: write them as key=value, e.g. reg=dropout p=0.5")
    return UserError(f"bad config: {msg}")


def _is_group_override(o: str) -> bool:
    key = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
    return key in GROUPS or key == EXPERIMENT or key.split("/", 1)[0] in GROUPS and "." not in key


def quote_value(value: str) -> str:
    """A string as a Hydra override value that reads back as itself: double-quoted, so a folder
    with spaces, quotes or commas (a sweep, unquoted) survives out=...; a backslash run before a
    quote (or the closing one) is doubled, as Hydra's quoted strings read it."""
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f'"{escaped}"'


def out_override(override: str) -> str | None:
    """The folder an out=... override names, as Hydra reads it (out="my runs" -> my runs; None
    for out=null, the default folder)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except HydraException as e:
        raise _friendly_hydra_error(e, [override]) from None
    value = None if parsed.is_sweep_override() else parsed.value()
    if parsed.is_sweep_override() or isinstance(value, (list, dict)):
        raise UserError(f"{override}: out takes one folder (quote a name with commas or spaces: out=\"my results\")")
    return None if value is None else str(value)


@cache
def _compose_groups(group_overrides: tuple[str, ...]) -> Any:
    """Hydra composition for one choice of config-group options (the slow part of loading a config)."""
    from hydra import compose as hydra_compose

    _hydra_ready()
    return hydra_compose(config_name="config", overrides=list(group_overrides))


def compose(overrides: list[str]) -> dict[str, Any]:
    """Compose conf/ with Hydra overrides into a plain, resolved dict.

    Like Hydra's compose, group choices select the options and value overrides are then applied
    in struct mode; the composition is cached per group choice, so a sweep over 1 000 seeds
    composes once, not 1 000 times.
    """
    return _compose(overrides)[0]


def _compose(overrides: list[str], refs: bool = False) -> tuple[dict[str, Any], frozenset[str] | None]:
    """compose(), and with `refs` the key paths the composed config's interpolations name (None:
    any key, as far as this module can tell); see _paths_read."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    groups = tuple(o for o in overrides if _is_group_override(o))
    values = [o for o in overrides if not _is_group_override(o)]
    composed = None
    try:
        cfg = OmegaConf.create(_compose_groups(groups))  # a copy: the cached one stays pristine
        composed = OmegaConf.to_container(cfg, resolve=False)
        OmegaConf.set_struct(cfg, True)
        parsed = OverridesParser.create().parse_overrides(values)
        if any(p.is_sweep_override() for p in parsed):
            raise HydraException("Ambiguous value: sweep")
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        _check_table_key(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        read = _paths_read(OmegaConf.to_container(cfg, resolve=False)) if refs else None
        return resolved, read  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise _friendly_hydra_error(e, list(overrides), composed) from None


# ---- a sweep composed once per template --------------------------------------------------------
# Composing with Hydra costs milliseconds per job; a 10 000-seed sweep needs it once. A swept key
# is *free* when setting its value in an already composed and resolved dict gives exactly what
# composing would: a value override (not a group, not +/~/++) of a plain scalar (no
# interpolation, not ???) onto a key that exists, that no interpolation of the composed config can
# name (nor a parent of it), outside the experiment's table and data.dataset (which
# _check_table_key reads). Each job's other dimensions pick a template composed by Hydra; its
# free keys are then set directly. tests/test_sweep_fast.py compares every job with per-job
# composition.
_PLAIN_KEY = re.compile(r"\w+(?:\.\w+)*")
_RESOLVER = re.compile(r"\$\{\s*([\w.\-]+)\s*:")
_PATH = re.compile(r"[\w.]+")
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_SAFE_RESOLVERS = frozenset({"oc.select"})  # reads a key named in its text, or a constant


def _strings(d: Any) -> Iterator[str]:
    if isinstance(d, dict):
        for v in d.values():
            yield from _strings(v)
    elif isinstance(d, list):
        for v in d:
            yield from _strings(v)
    elif isinstance(d, str):
        yield d


def _paths_read(unresolved: Any) -> frozenset[str] | None:
    """Every key path the interpolations of a composed config name: a path ending in "." is
    followed by a part built from a value (${protocol.datasets.${data.dataset}.l}), so it may read
    anything under it. None where that cannot be told from the text: a relative interpolation
    (${..x}), a key built from a value at its start (${${x}}), or a resolver other than oc.select."""
    paths: set[str] = set()
    for s in _strings(unresolved):
        if "$" not in s:
            continue
        bare = re.sub(r"\s+", "", s)
        if "${." in bare or "${${" in bare or any(r not in _SAFE_RESOLVERS for r in _RESOLVER.findall(s)):
            return None
        paths.update(p.lstrip(".") for p in _PATH.findall(s))
    return frozenset(p for p in paths if p)


def _reads(paths: frozenset[str], key: str) -> bool:
    """Whether an interpolation naming `paths` can read `key` (itself, a parent or a child)."""
    for p in paths:
        if p.endswith("."):
            if key.startswith(p) or p.startswith(key + "."):
                return True
        elif p == key or key.startswith(p + ".") or p.startswith(key + "."):
            return True
    return False


def _plain_value(o: Any) -> tuple[bool, Any]:
    """Whether a parsed override sets a plain scalar onto an existing key, and the value."""
    from hydra.core.override_parser.types import OverrideType

    if o.type is not OverrideType.CHANGE or o.package is not None or o.is_sweep_override():
        return False, None
    key = o.key_or_group
    if not _PLAIN_KEY.fullmatch(key) or key in GROUPS or key == EXPERIMENT or key == "out":
        return False, None
    value = o.value()
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return True, value
    if isinstance(value, str) and "$" not in value and "\\" not in value and value != "???":
        return True, value
    return False, None


def _free_candidates(dims: list[Dim]) -> dict[int, tuple[list[str], list[Any]]]:
    """The swept dimensions that may be free: index -> (key path, each value as parsed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    keys: dict[int, list[str]] = {}
    values: dict[int, list[Any]] = {}
    for i, (_, _, lines) in enumerate(dims):
        if len(lines) < 2 or any(_is_group_override(v) for v in lines):
            continue
        first = parser.parse_overrides([lines[0]])[0]
        key, element = first.key_or_group, lines[0].split("=", 1)[0]
        plain = []
        for line in lines:
            k, _, v = line.partition("=")
            if k == element and _INT.fullmatch(v):  # as Hydra's grammar reads an INT, without its parser
                plain.append((True, int(v)))
            else:
                o = parser.parse_overrides([line])[0]
                plain.append(_plain_value(o) if o.key_or_group == key else (False, None))
        if _plain_value(first)[0] and all(ok for ok, _ in plain):
            keys[i], values[i] = key.split("."), [v for _, v in plain]
    # Keys one inside another, the experiment's table and data.dataset: composed per job.
    # (A group's choice is made before any value is set: a key under it may be free.)
    all_keys = [".".join(k) for k in keys.values()] + [
        d[2][0].lstrip("+~").split("=", 1)[0] for j, d in enumerate(dims) if j not in keys and not _is_group_override(d[2][0])]
    out = {}
    for i, k in keys.items():
        name = ".".join(k)
        nested = any(o != name and (o.startswith(name + ".") or name.startswith(o + ".")) for o in all_keys)
        if not nested and k[0] != TABLE_KEY and name != "data.dataset":
            out[i] = (k, values[i])
    return out


def _copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_copy(v) for v in d]
    return d


def _set(d: dict[str, Any], path: list[str], value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def _compose_sweep(dims: list[Dim], combos: list[tuple[int, ...]]) -> list[dict[str, Any]]:
    """Each job's composed dict, as compose() gives it, composing once per template: the jobs
    that differ only in free keys share one (see above). Jobs are taken in order, so the first
    job that cannot be composed raises what composing it alone would."""
    cands = _free_candidates(dims)
    bound = [i for i in range(len(dims)) if i not in cands]
    free_of: dict[tuple[int, ...], list[int]] = {}  # free dims per choice of the bound ones
    templates: dict[tuple, dict[str, Any]] = {}
    out = []
    for combo in combos:
        key = tuple(combo[i] for i in bound)
        free = free_of.get(key)
        if free is not None:
            t = templates.get((key, tuple(combo[i] for i in cands if i not in free)))
            if t is not None:
                d = _copy(t)
                for i in free:
                    _set(d, cands[i][0], cands[i][1][combo[i]])
                out.append(d)
                continue
        d, read = _compose([dims[j][2][k] for j, k in enumerate(combo)], refs=True)
        if free is None:
            free = free_of[key] = [i for i in cands if read is not None and not _reads(read, ".".join(cands[i][0]))
                                   and _has_leaf(d, cands[i][0])]
        templates[(key, tuple(combo[i] for i in cands if i not in free))] = d
        out.append(d)
    return out


def _has_leaf(d: Any, path: list[str]) -> bool:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return False
        d = d[k]
    return not isinstance(d, (dict, list))


def _missing(d: Any, prefix: str = "") -> str | None:
    if isinstance(d, dict):
        for k, v in d.items():
            m = _missing(v, f"{prefix}{k}.")
            if m:
                return m
    elif d == "???":
        return prefix[:-1]
    return None


def load_job(overrides: list[str]) -> tuple[RunConfig, "Launcher"]:
    """Compose and validate one run's config and the launcher that will run it."""
    return _job_of(compose(overrides))


def _job_of(d: dict[str, Any]) -> tuple[RunConfig, "Launcher"]:
    m = _missing(d)
    if m:
        raise UserError(f"missing value for {m}: set it with {m}=VALUE")
    return build(d), build_launcher(d)


def load(overrides: list[str]) -> RunConfig:
    """Compose and validate one run's config."""
    return load_job(overrides)[0]


Dim = tuple[str, str, list[str]]  # a sweep dimension: key, the override as typed, its "key=value"s


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Expand Hydra sweep grammar (a,b / range() / choice() / glob()) into one override list per run.

    Refused with one line: a sweep that expands to no values, a sweep over `out` or the launcher
    (one per invocation) and a key given twice next to a sweep of it.
    """
    return [list(job) for job in itertools.product(*(d[2] for d in _sweep_dims(overrides)))]


def load_sweep(overrides: list[str]) -> list[tuple["RunConfig", "Launcher"]]:
    """Every job of a sweep, composed and validated once, in expansion order.

    Refused beside expand_sweep's errors: a swept key whose values change no run's config
    (`-m p=0.1,0.5 reg=dropout reg.dropout.p=0.3` would otherwise run 2 runs where 4 were asked
    for). A sweep that changes only some runs is fine: in `-m reg=none,dropout p=0.2,0.5` the two
    reg=none runs are one run (p is unused there). The check hashes the jobs loaded anyway, as
    their run ids will (identity.run_id_of, before dropbench.derive resolves derived values: a
    derived value follows from the config), so it costs no composition of its own.
    """
    dims = _sweep_dims(overrides)
    combos = list(itertools.product(*(range(len(d[2])) for d in dims)))
    loaded = [_job_of(d) for d in _compose_sweep(dims, combos)]
    ids = [run_id_of(cfg) for cfg, _ in loaded] if any(len(set(d[2])) > 1 for d in dims) else []
    for i, (name, line, values) in enumerate(dims):
        if len(set(values)) < 2:
            continue
        by_rest: dict[tuple[int, ...], set[str]] = {}
        for combo, rid in zip(combos, ids):
            by_rest.setdefault(combo[:i] + combo[i + 1 :], set()).add(rid)
        if all(len(ids) == 1 for ids in by_rest.values()):
            raise UserError(_no_change_message(dims, i, [cfg for cfg, _ in loaded]))
    return loaded


def _sweep_dims(overrides: list[str]) -> list[Dim]:
    """One dimension per key, in order, as Hydra's BasicSweeper forms them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    _hydra_ready()
    try:
        # The config loader lets glob() see each group's options in conf/.
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))
        # As Hydra's BasicSweeper: one dimension per key, in order; a repeated key replaces it.
        dims: dict[str, Dim] = {}
        swept: set[str] = set()
        for o in parsed:
            key, name, line = o.get_key_element(), o.key_or_group, o.input_line
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    raise UserError(f"{line}: only lists, range(), choice() and glob() can be swept; an interval cannot")
                values = [f"{key}={v}" for v in o.sweep_string_iterator()]
                _check_sweepable(name, line, values)
            else:
                values = [f"{key}={o.get_value_element_as_str()}"]
            earlier = next((d for d in dims.values() if d[0] == name), None)
            if earlier is not None and (name in swept or o.is_sweep_override()):
                raise UserError(f"{name} is given twice ({earlier[1]} and {line}) in a sweep; give it once")
            if o.is_sweep_override():
                swept.add(name)
            dims[key] = (name, line or f"{key}=...", values)
    except HydraException as e:
        raise _friendly_hydra_error(e, list(overrides)) from None
    except ValueError as e:  # e.g. range(1,5,0)
        raise UserError(f"cannot expand the sweep {' '.join(overrides)!r}: {e}") from None
    return list(dims.values())


def _check_sweepable(name: str, line: str, values: list[str]) -> None:
    if not values:
        opts = list_options().get(name)
        fix = f"options of {name} are {', '.join(opts)}" if opts else "give at least one value"
        raise UserError(f"{line} expands to no values, so the sweep has no runs; {fix}")
    if name == "out":
        raise UserError(f"out= takes one folder per invocation; do not sweep over out ({line})")
    if name == "launcher" or name.startswith("launcher.") or name.startswith("launcher/"):
        raise UserError(f"launcher= takes one launcher per invocation; do not sweep over it ({line})")


def _run_ids(dims: list[Dim], i: int, combo: tuple[str, ...]) -> set[str]:
    """The run ids of dimension i's values with the other dimensions fixed at `combo`, stopping at two."""
    ids: set[str] = set()
    for v in dims[i][2]:
        ids.add(run_id_of(load_job([*combo[:i], v, *combo[i:]])[0]))
        if len(ids) > 1:
            break
    return ids


def _no_change_message(dims: list[Dim], i: int, seen: list["RunConfig"]) -> str:
    """Why sweeping dimension i changes no run (composes configs: only on the error path)."""
    name = dims[i][0]
    for j, (other, line, values) in enumerate(dims):
        # Which fixed value override pins it? Drop each in turn and see if the sweep then matters.
        if j == i or len(values) != 1 or other in GROUPS or other == "out":
            continue
        rest = dims[:j] + dims[j + 1 :]
        k = i - (j < i)
        try:
            combos = itertools.islice(itertools.product(*(d[2] for m, d in enumerate(rest) if m != k)), 8)
            if any(len(_run_ids(rest, k, c)) > 1 for c in combos):
                return f"sweeping {name} changes no run: {line} overrides it; drop one of them"
        except UserError:
            continue
    if name == "p" and all(c.p is None for c in seen):
        return "sweeping p changes no run: no run has a dropout-family regularizer for p to act on (add e.g. reg=dropout)"
    return f"sweeping {name} ({dims[i][1]}) changes no run: every value gives the same config; drop it from the sweep"
