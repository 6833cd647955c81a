"""``das.yaml``: per-model sites, thresholds and data sizes for the hypothesis files.

Hypothesis files name sites and claims; the numbers live here, per model, so the same files run
unchanged against the embedded model and a real Alpaca directory::

    models:
      embedded:                 # the key, or `path:`, says which model an entry is for
        path: embedded
        n_train: 2000
        n_test: 500
        sites:
          boundary: block_output[layer=1, pos=last]
        thresholds:
          left_boundary: 0.85   # say in a comment where each number comes from
        prompt_template: chat   # optional: the wrapper this model reads (default: Alpaca's)
        answers: [" Yes", " No"]  # optional: its answer words for Yes and No (as it reads them)

Read with yaml's safe loader (a key given twice is an error); unknown keys and malformed values
are errors that name the key.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from das_assert.arg_types import MAX_PAIRS
from das_assert.errors import ConfigError, MissingEntry, did_you_mean, which_is_misspelt
from das_assert.metrics import check_threshold
from das_assert.prompt_templates import CHAT, check_prompt_template

__all__ = ["ModelSettings", "find_model_settings", "load_settings"]

MODEL_KEYS = (
    "path",
    "n_train",
    "n_test",
    "epochs",
    "batch_size",
    "sites",
    "thresholds",
    "robustness",
    "search",
    "prompt_template",
    "answers",
    "notes",
)
SEARCH_KEYS = (
    "layers",
    "positions",
    "n_train",
    "n_test",
    "epochs",
    "expect_layers",
    "expect_positions",
)


@dataclass(frozen=True)
class ModelSettings:
    """The settings of one model entry of das.yaml."""

    key: str
    source: Path
    path: str | None = None
    n_train: int = 2000
    n_test: int = 500
    epochs: int = 3
    batch_size: int = 32  # pairs per training step; it bounds a fit's GPU memory
    sites: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    robustness: dict[str, float] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    # The wrapper this model reads prompts in (das_assert.prompt_templates): text with
    # {instruction} and {amount} slots, or "chat" (its tokenizer's chat template); None: Alpaca's.
    prompt_template: str | None = None
    # Its words for the default answers Yes and No (" Yes", " No" after a wrapper ending "A:");
    # None: Yes and No. Other answer words a hypothesis names stay its own.
    answers: tuple[str, str] | None = None

    def site(self, name: str) -> Any:
        from das_assert.sites import parse_site

        if name not in self.sites:
            raise MissingEntry(
                f"{self.source}: models.{self.key}.sites has no site {name!r}, which a test asks "
                f"for (it has: {', '.join(sorted(self.sites)) or 'none'}); add it there, such as "
                f"`{name}: block_output[layer=0, pos=last]`.{which_is_misspelt(name, self.sites)}"
            )
        return parse_site(self.sites[name])

    def threshold(self, claim: str, *, table: str = "thresholds") -> float:
        values = self.thresholds if table == "thresholds" else self.robustness
        if claim not in values:
            raise MissingEntry(
                f"{self.source}: models.{self.key}.{table} has no entry for claim {claim!r}; "
                f"add `{claim}: <number in [0, 1)>` there, with a comment saying where the "
                "number comes from (das_assert has no silent default)."
                + which_is_misspelt(claim, values)
            )
        return values[claim]


class ConfigWarning(UserWarning):
    """A das.yaml entry that is valid but almost certainly not what was meant."""


def misspelt_claims(settings: ModelSettings) -> list[str]:
    """Threshold keys that are one typo away from a causal model's name: a claim that asks for
    the right name fails only after its alignment has trained, so say it before."""
    from das_assert.tasks.price_tagging import CAUSAL_MODELS

    found = []
    for table in ("thresholds", "robustness"):
        for claim in getattr(settings, table):
            name, dot, rest = claim.partition(".")
            # one typo, not a likeness ratio: a model of one's own named left_boundary_v2 is no
            # typo of left_boundary, yet the ratio (0.90) took it for one
            close = [known for known in CAUSAL_MODELS if one_typo_apart(name, known)]
            if name not in CAUSAL_MODELS and close:
                found.append(
                    f"{settings.source}: models.{settings.key}.{table}.{claim} names no causal "
                    f"model; did you mean {close[0] + dot + rest!r}? A claim asking for that name "
                    "would fail only after its alignment trained. (A model of your own counts "
                    "once its file registers it: is that file collected in this run?)"
                )
    return found


def one_typo_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter inserted, deleted, replaced, or two neighbours
    swapped (and not ``a`` itself)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    start = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if len(a) != len(b):
        longer, shorter = (a, b) if len(a) > len(b) else (b, a)
        return longer[start + 1 :] == shorter[start:]
    swapped = (
        a[start + 2 :] == b[start + 2 :] and a[start : start + 2] == b[start : start + 2][::-1]
    )
    return a[start + 1 :] == b[start + 1 :] or swapped


def _fraction_table(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of claim -> number, got {raw!r}")
    table = {}
    for claim, value in raw.items():
        if (problem := check_threshold(value)) is not None:
            raise ConfigError(f"{where}.{claim} = {value!r}: {problem}")
        table[str(claim)] = float(value)
    return table


def _integer(raw: Any, where: str, default: int, minimum: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ConfigError(f"{where} = {raw!r} must be an integer >= {minimum}")
    if where.rsplit(".", 1)[-1] in ("n_train", "n_test") and raw > MAX_PAIRS:
        raise ConfigError(  # as the command line's --n-train
            f"{where} = {raw} is past {MAX_PAIRS:,} pairs (every pair is held in memory at once)"
        )
    return raw


def _search_table(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(SEARCH_KEYS)}")
    for name in raw:
        if name not in SEARCH_KEYS:
            raise ConfigError(
                f"{where} has an unknown key {name!r}; allowed: {', '.join(SEARCH_KEYS)}."
                + did_you_mean(str(name), SEARCH_KEYS)
            )
    raw = {name: value for name, value in raw.items() if value is not None}  # null: absent
    for name in ("layers", "positions"):
        if not raw.get(name):
            raise ConfigError(
                f"{where} has no {name}; a search needs both layers: [...] and positions: [...] "
                "(the grid's rows and columns)"
            )
    for name in ("layers", "expect_layers"):
        values = raw.get(name, [])
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise ConfigError(f"{where}.{name} must be a list of layer numbers, got {values!r}")
        if len(set(values)) != len(values):  # the same cell twice, the second overwriting it
            raise ConfigError(f"{where}.{name}: {values} lists a layer twice; list it once")
    from das_assert.errors import InvalidArgument
    from das_assert.positions import check_distinct_positions, parse_position

    for name in ("positions", "expect_positions"):
        values = raw.get(name, [])
        if not isinstance(values, list):
            raise ConfigError(f"{where}.{name} must be a list of position names, got {values!r}")
        parsed = []
        for value in values:
            try:
                parsed.append(parse_position(value))
            except Exception as exc:
                raise ConfigError(f"{where}.{name}: {exc}") from None
        try:
            check_distinct_positions(parsed, f"{where}.{name}")
        except InvalidArgument as exc:
            raise ConfigError(str(exc)) from None
    for name, grid in (("expect_layers", "layers"), ("expect_positions", "positions")):
        outside = [value for value in raw.get(name, []) if value not in raw[grid]]
        if outside:  # the region test compares the best cell with these, as written
            raise ConfigError(
                f"{where}.{name}: {outside} not among the searched {grid} {raw[grid]}; the "
                "expected region is part of the grid, written as its cells are"
            )
    for name in ("n_train", "n_test", "epochs"):
        if name in raw:
            _integer(raw[name], f"{where}.{name}", 0, 1 if name == "epochs" else 2)
    return dict(raw)


def _unique_key_loader() -> type:
    """yaml's SafeLoader, except that a key given twice in one mapping is an error: the
    second silently won, so a threshold edited in one place could be overridden in another."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be
                    continue  # overridden by the mapping's own, as YAML intends
                key = self.construct_object(key_node, deep=deep)
                problem = None
                if isinstance(key, list | dict) or key is None:
                    problem = f"{'an empty key' if key is None else 'a list or mapping as a key'}"
                    problem += " is not a name"
                elif str(key) in seen:  # read as text: 1 and '1', true and 'True' are one name
                    problem = f"the key {key!r} is given twice"
                if problem:
                    raise yaml.constructor.ConstructorError(
                        None, None, problem, key_node.start_mark
                    )
                seen.add(str(key))
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_settings(path: Path) -> dict[str, ModelSettings]:
    """Parse das.yaml into ``key -> ModelSettings``."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; name the das.yaml file inside it")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except NotADirectoryError:  # --das-config=somefile/das.yaml
        raise ConfigError(
            f"{path} does not exist: a file stands where a folder of that path should be; "
            "check the path"
        ) from None
    except OSError as exc:  # a symbolic link that leads back to itself, a permission
        raise ConfigError(
            f"{path} cannot be read ({exc.strerror or exc}); check the path (and where a "
            "link in it points), and that this user may read it"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:  # "[[[[...": no settings nest this deep
        raise ConfigError(f"{path} nests too deeply to read; it is not a das.yaml") from None
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise ConfigError(
            f"{path} holds a value that cannot be read: {str(exc).split(';')[0]}"
        ) from None
    except (KeyError, AttributeError, TypeError):  # a tag yaml cannot apply: "!!bool abc"
        raise ConfigError(
            f"{path} holds a value its tag cannot make (as in `n_train: !!bool abc`); remove "
            "the !!tag or correct the value"
        ) from None
    _check_expanded_size(raw, path)
    if raw is None:
        raise ConfigError(
            f"{path} is empty; it needs a `models:` mapping (see README, Writing a hypothesis)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping that holds only `models:`, found a "
            f"{type(raw).__name__} ({reprlib.repr(raw)})"
        )
    if set(raw) - {"models"}:
        extra = sorted(map(str, set(raw) - {"models"}))
        message = f"{path}: the top level must hold only `models:`, found {extra!r}"
        if hint := did_you_mean(extra[0], ["models"]):
            message += "." + hint
        raise ConfigError(message)
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: `models:` must map model names to their settings")
    out: dict[str, ModelSettings] = {}
    problems: list[str] = []
    for key, entry in models.items():
        parsed = _model_entry(path, str(key), entry, problems)
        if parsed is not None:
            out[str(key)] = parsed
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:  # all of them at once: fixing one per run took as many runs as typos
        raise ConfigError(
            f"{path} has {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return out


#: More values than any das.yaml needs: YAML's aliases share one object where they repeat it, so
#: a file of a few hundred bytes ("billion laughs") can stand for billions, which a message or a
#: check turning it into text would expand.
_MOST_VALUES = 100_000


def _check_expanded_size(raw: Any, path: Path) -> None:
    """Refuse das.yaml whose values, each alias counted where it is used, pass ``_MOST_VALUES``."""
    count, stack = 0, [raw]
    while stack:
        value = stack.pop()
        count += 1
        if count > _MOST_VALUES:
            raise ConfigError(
                f"{path} stands for more than {_MOST_VALUES:,} values once its YAML aliases "
                "(*name) are expanded; write the settings out instead of repeating anchors"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


#: A das.yaml model name: one folder name (``baselines/<name>/``), never ``.``, ``..`` or a path.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _model_entry(path: Path, key: str, entry: Any, problems: list[str]) -> ModelSettings | None:
    """One model entry of das.yaml, or None; every problem found is added to ``problems``."""
    where = f"{path}: models.{key}"
    if not _MODEL_NAME.fullmatch(key):  # it names a folder: "../x" would save a baseline there
        suggestion = re.sub(r"[^A-Za-z0-9._-]+", "--", key).strip(".-") or "my_model"
        problems.append(
            f"{path}: the model name {key!r} must be one folder name of letters, digits, '.', "
            f"'_' and '-' (it names the model's baseline folder), such as {suggestion!r}; a "
            "model elsewhere is given by its `path:`"
        )
        return None
    if not isinstance(entry, dict):
        problems.append(f"{where} must be a mapping")
        return None
    before = len(problems)

    def checked(parse: Any, *args: Any) -> Any:
        try:
            return parse(*args)
        except ConfigError as exc:
            problems.append(str(exc))
            return None

    for name in entry:
        if name not in MODEL_KEYS:
            problems.append(
                f"{where} has an unknown key {name!r}; allowed: {', '.join(MODEL_KEYS)}."
                + did_you_mean(str(name), MODEL_KEYS)
            )
    if entry.get("path") is not None and not isinstance(entry["path"], str):
        problems.append(
            f"{where}.path must be a directory path or 'embedded', got {entry['path']!r}; "
            "quote it if it looks like a number"
        )
    template = entry.get("prompt_template")
    if template is not None and template != CHAT and (problem := check_prompt_template(template)):
        problems.append(f"{where}.prompt_template {problem}")
    answers = entry.get("answers")
    if answers is not None and (
        not isinstance(answers, list)
        or len(answers) != 2
        or not all(isinstance(word, str) and word.strip() for word in answers)
        or answers[0] == answers[1]
    ):
        unquoted = isinstance(answers, list) and any(isinstance(w, bool) for w in answers)
        problems.append(
            f"{where}.answers must be two different words, the true answer first, as this model "
            f'reads them (e.g. [" Yes", " No"]), got {answers!r}'
            + ("; YAML reads unquoted Yes, No, True and False as booleans: quote them" * unquoted)
        )
    sites = entry.get("sites") or {}
    if not isinstance(sites, dict):
        problems.append(f"{where}.sites must map site names to canonical sites")
        sites = {}
    from das_assert.sites import parse_site

    for name, text in sites.items():
        try:
            parse_site(str(text))
        except Exception as exc:
            problems.append(f"{where}.sites.{name}: {exc}")
    parsed = {
        "search": checked(_search_table, entry.get("search"), f"{where}.search"),
        "n_train": checked(_integer, entry.get("n_train"), f"{where}.n_train", 2000, 2),
        "n_test": checked(_integer, entry.get("n_test"), f"{where}.n_test", 500, 2),
        "epochs": checked(_integer, entry.get("epochs"), f"{where}.epochs", 3, 1),
        "batch_size": checked(_integer, entry.get("batch_size"), f"{where}.batch_size", 32, 1),
        "thresholds": checked(_fraction_table, entry.get("thresholds"), f"{where}.thresholds"),
        "robustness": checked(_fraction_table, entry.get("robustness"), f"{where}.robustness"),
    }
    if len(problems) > before:
        return None
    return ModelSettings(
        key=key,
        source=path,
        path=entry.get("path"),
        prompt_template=template,
        answers=tuple(answers) if answers is not None else None,
        sites={str(k): str(v) for k, v in sites.items()},
        **parsed,
    )


def find_model_settings(
    settings: dict[str, ModelSettings],
    model_path: Path,
    *,
    embedded: bool,
    key: str | None = None,
) -> ModelSettings:
    """The entry for the loaded model: the entry ``key`` where one is named, else the one whose
    ``path:`` is the model, else one without a ``path:`` whose key is the model's directory
    name (or ``embedded``). An entry whose ``path:`` names another model is never taken by its
    key: another model's thresholds and baselines would judge this one, with no word said."""
    if key is not None:
        if key not in settings:
            source = next(iter(settings.values())).source
            raise ConfigError(
                f"{source} has no model entry {key!r} (--das-model-entry); its entries are "
                f"{', '.join(sorted(settings))}." + did_you_mean(key, list(settings))
            )
        return settings[key]
    for entry in settings.values():
        if entry.path == "embedded" and embedded:
            return entry
        if entry.path and entry.path != "embedded":
            if _entry_path(entry).resolve() == Path(model_path).resolve():
                return entry
    name = "embedded" if embedded else Path(model_path).name
    named_alike = settings.get(name)
    if named_alike is not None and not named_alike.path:
        return named_alike
    source = next(iter(settings.values())).source
    shown = "embedded" if embedded else Path(model_path).resolve()
    missing = [  # an entry meant for this model whose relative path was read from elsewhere
        f" Entry {key!r} has path: {entry.path}, read from das.yaml's folder as {where}, "
        "which does not exist."
        for key, entry in settings.items()
        if entry.path and entry.path != "embedded" and not (where := _entry_path(entry)).exists()
    ]
    if named_alike is not None:  # named like this model's folder, its path another model's
        missing.append(
            f" Entry {name!r} is named like the model's folder, but its path: "
            f"{named_alike.path} is another model; judge this model under it with "
            f"--das-model-entry {name} if it is an update of that model."
        )
    raise ConfigError(
        f"{source} has no settings for the model {str(model_path)!r}: add an entry "
        f"`models: {name}: {{path: {shown}, sites: ..., thresholds: ...}}` (a relative path is "
        "read from das.yaml's folder; copy the embedded entry and measure your model's numbers "
        "first, starting with `python3 -m das_assert check --model DIR`: there is no silent "
        "default), or judge an update of a listed model under its "
        "entry with --das-model-entry KEY." + "".join(missing)
    )


def _entry_path(entry: ModelSettings) -> Path:
    """An entry's ``path:``, a relative one read from its das.yaml's folder."""
    written = Path(str(entry.path)).expanduser()
    return written if written.is_absolute() else entry.source.parent / written
