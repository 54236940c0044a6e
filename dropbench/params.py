"""Config fields with their constraints, declared once, and the one routine that checks them.

Every config class (data sets, models, optimizers, launchers, eval, the run, each regularizer) is a
frozen dataclass whose fields say what they accept: `param(default, check)`, `check` a Range, a
OneOf or a Check. A rule that relates several fields (x_max > x_min) is a `Rule` in the class's
RULES. `validate(obj, prefix)` walks both; config/coerce.py calls it on every dataclass it
builds, so no class writes its own validate(). Errors name the key, the bad value and what is
allowed, in one line: "invalid value data.n_train=0: must be > 0".

Standard library only: the declarations are imported wherever a config class is (dropbench.config,
every data set and regularizer module), which must stay quick to import.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dropbench.errors import UserError, did_you_mean

# Field metadata: the field's check (CHECK); a field added after run ids were pinned, left out of
# the run id while it holds its default (ID_OMITS_DEFAULT; config/identity.py reads it).
CHECK = "check"
ID_OMITS_DEFAULT = "id_omits_default"

# Every seed consumer accepts this range: torch.manual_seed, numpy default_rng, sklearn random_state.
SEED_MAX = 2**32 - 1


def _num(x: float) -> str:
    """A bound as an error states it: an integral bound in full (4294967295), others as %g."""
    if math.isfinite(x) and float(x).is_integer() and abs(x) < 2**53:
        return str(int(x))
    return f"{x:g}"


@dataclass(frozen=True)
class Range:
    """An interval a number must lie in; `text` is how an error states it (`says` replaces it)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""
    says: str = ""

    def ok(self, v: float) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    @property
    def text(self) -> str:
        if self.says:
            return self.says
        if self.hi == math.inf:
            s = f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        else:
            s = f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        return f"{s} ({self.why})" if self.why else s

    def hint(self, v: Any) -> str:
        return ""

    def outside(self) -> list[float]:
        """Values just outside the range (for tests)."""
        out = []
        if self.lo != -math.inf:
            out.append(self.lo if self.lo_open else self.lo - 0.5)
        if self.hi != math.inf:
            out.append(self.hi if self.hi_open else self.hi + 0.5)
        return out


@dataclass(frozen=True)
class OneOf:
    """A word from a list that is not a Literal type (the list is read from elsewhere, e.g. a
    catalog); an error suggests the closest."""

    choices: tuple[str, ...]

    def ok(self, v: Any) -> bool:
        return v in self.choices

    @property
    def text(self) -> str:
        return "one of " + ", ".join(self.choices)

    def hint(self, v: Any) -> str:
        return did_you_mean(str(v), self.choices)

    def outside(self) -> list[str]:
        """A value not among the choices (for tests)."""
        return [self.choices[0] + "_"]


@dataclass(frozen=True)
class Check:
    """Any other test of one value, with how an error states what is allowed and values it refuses
    (for tests, as Range.outside)."""

    test: Callable[[Any], bool]
    text: str
    bad: tuple[Any, ...] = ()

    def ok(self, v: Any) -> bool:
        return self.test(v)

    def hint(self, v: Any) -> str:
        return ""

    def outside(self) -> list[Any]:
        return list(self.bad)


Constraint = Range | OneOf | Check

PROB = Range(0.0, 1.0, hi_open=True, why="p=1 would drop everything")
NONNEG = Range(0.0)
POSITIVE = Range(0.0, lo_open=True)
FRACTION = Range(0.0, 1.0, lo_open=True, hi_open=True)
SEED = Range(0, SEED_MAX, why="2**32 - 1: the range numpy, scikit-learn and torch all accept")


def param(default: Any = dataclasses.MISSING, check: Constraint | None = None, *,
          default_factory: Any = dataclasses.MISSING, id_omits_default: bool = False) -> Any:
    """A config field: its default (none: a required key), the constraint its value must meet
    (None is always accepted where the type allows it: null means "not set"), and whether the
    run id leaves it out at its default (a field added after ids were pinned)."""
    metadata: dict[str, Any] = {CHECK: check}
    if id_omits_default:
        metadata[ID_OMITS_DEFAULT] = True
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass(frozen=True)
class Rule:
    """A rule across the fields of one config class: `ok(config)`, else the error `says(config,
    prefix)`. A class declares its rules as `RULES: ClassVar[tuple[Rule, ...]]`, checked after
    every field's own constraint."""

    ok: Callable[[Any], bool]
    says: Callable[[Any, str], str]


def key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def invalid(key: str, value: Any, allowed: str, hint: str = "") -> UserError:
    """The one wording of a bad value: the key, the value, what is allowed."""
    return UserError(f"invalid value {key}={value!r}{hint}: must be {allowed}")


def must(name: str, ok: Callable[[Any], bool], allowed: Callable[[Any, str], str]) -> Rule:
    """A Rule on field `name` whose allowed values depend on other fields: the error is
    "invalid value PREFIX.name=V: must be ALLOWED", ALLOWED from (config, prefix)."""
    return Rule(ok, lambda c, k: str(invalid(key(k, name), getattr(c, name), allowed(c, k))))


def constraints(cls: type) -> Iterable[tuple[str, Constraint]]:
    """(field name, its constraint) for every constrained field of a config class."""
    for f in dataclasses.fields(cls):
        c = f.metadata.get(CHECK)
        if c is not None:
            yield f.name, c


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of a config dataclass against its constraint, then the class's RULES;
    raise UserError on the first that fails."""
    for name, c in constraints(type(obj)):
        v = getattr(obj, name)
        if v is not None and not c.ok(v):
            raise invalid(key(prefix, name), v, c.text, c.hint(v))
    for rule in getattr(type(obj), "RULES", ()):
        if not rule.ok(obj):
            raise UserError(rule.says(obj, prefix))
