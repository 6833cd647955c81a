"""The plugin's ``--das-*`` options: their definitions and defaults, the check of the paths
they name, and the options a failure's "reproduce:" line repeats. No torch here."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from das_assert.plugin_fuzz import PROFILES

__all__ = [
    "CACHE_MODES",
    "DEFAULTS",
    "INCONCLUSIVE",
    "RefusedValue",
    "add_options",
    "baseline_root",
    "check_output_paths",
    "refused_values",
    "reproduce_options",
    "reproduce_threads",
    "run_token",
]

INCONCLUSIVE = ("fail", "xfail", "pass")
CACHE_MODES = ("off", "read", "write", "readwrite")
DEFAULTS: dict[str, Any] = {}  # dest -> default, filled by add_options


class _Recording:
    """An option group that records each option's default in DEFAULTS as it is added."""

    def __init__(self, group: Any) -> None:
        self._group = group

    def addoption(self, *names: str, **attrs: Any) -> None:
        if "type" in attrs:
            attrs["type"] = _deferred(names[0], attrs["type"])
        self._group.addoption(*names, **attrs)
        DEFAULTS[names[0].lstrip("-").replace("-", "_")] = attrs.get("default")


class RefusedValue:
    """A value an option's type refused, kept until pytest_configure reports it: refused by
    pytest's parser, it stopped pytest before the plugin could write the reports asked for,
    and an old --das-json was left to be read as this run's."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message

    def __str__(self) -> str:
        return f"argument {self.option}: {self.message}"


def _deferred(option: str, parse: Any) -> Any:
    """``parse``, returning a RefusedValue where it raises argparse's type error."""
    import argparse

    def parse_or_keep(value: str) -> Any:
        try:
            return parse(value)
        except argparse.ArgumentTypeError as exc:
            return RefusedValue(option, str(exc))

    return parse_or_keep


def refused_values(config: pytest.Config) -> list[str]:
    """One line per das option whose value its type refused (see RefusedValue)."""
    values = (config.getoption(dest) for dest in DEFAULTS)
    return [str(value) for value in values if isinstance(value, RefusedValue)]


def _choice(choices: tuple[str, ...]) -> Any:
    """An argparse type: one of ``choices`` (argparse's error names the option)."""
    import argparse

    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _device(value: str) -> str:
    """An argparse type: ``cpu``, ``cuda``, ``cuda:N`` or ``cuda:worker`` (whether this machine
    has that device is checked when the model loads)."""
    import argparse

    index = value.partition(":")[2]
    if value in ("cpu", "cuda", "cuda:worker") or (value.startswith("cuda:") and index.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not one of cpu, cuda, cuda:N, cuda:worker")


def _fraction(value: str) -> float:
    from das_assert.arg_types import parse_fraction  # argparse only: no torch

    return parse_fraction(value)


def _joint_budget(value: str) -> int:
    from das_assert.arg_types import non_negative_int  # argparse only: no torch

    return non_negative_int(value)


def _seed(value: str) -> int:
    from das_assert.arg_types import seed_int  # argparse only: no torch

    return seed_int(value)


def _baseline_name(value: str) -> str:
    from das_assert.arg_types import baseline_name  # argparse only: no torch

    return baseline_name(value)


def _baseline_reference(flag: str) -> Any:
    def parse(value: str) -> str:
        from das_assert.arg_types import baseline_reference  # argparse only: no torch

        return baseline_reference(flag)(value)

    return parse


def add_options(parser: pytest.Parser) -> None:
    """The ``--das-*`` options, in their own help group; each default is kept in DEFAULTS."""
    group = _Recording(parser.getgroup("das", "das_assert: causal hypotheses as tests"))
    group.addoption(
        "--das-model",
        metavar="PATH",
        default=None,
        help="model under test: a local HF directory or 'embedded'. "
        "Default: $DAS_MODEL, else 'embedded'",
    )
    group.addoption(
        "--das-model-entry",
        metavar="KEY",
        default=None,
        help="judge the model under the das.yaml entry KEY (its sites, thresholds and "
        "baselines) wherever its path is: an update of that model. Default: the entry whose "
        "path is the model's",
    )
    group.addoption(
        "--das-config",
        metavar="PATH",
        default=None,
        help="das.yaml with sites and thresholds. Default: the das.yaml beside the "
        "hypothesis files (one for them all), else <rootdir>/hypotheses/das.yaml",
    )
    group.addoption(
        "--das-seed",
        metavar="NUM",
        type=_seed,
        default=0,
        help="seed of the data, the initialisation and training. Default: 0",
    )
    group.addoption(
        "--das-device",
        metavar="DEVICE",
        default="cpu",
        type=_device,
        help="cpu, cuda, cuda:N, or cuda:worker (one GPU per pytest-xdist worker). Default: 'cpu'",
    )
    group.addoption(
        "--das-device-map",
        metavar="MAP",
        default=None,
        help="e.g. 'auto': spread a model too large for one GPU over all (needs accelerate)",
    )
    group.addoption(
        "--das-joint-cells-mib",
        metavar="MIB",
        default=0,
        type=_joint_budget,
        help="a search trains a position's layers together while their copies of a batch's KV "
        "cache fit MIB (on a GPU: 1.7x faster for a 7 x 2 grid at Llama-7B's shape on an H200; "
        "no gain on CPU). Default: 0, each cell alone",
    )
    group.addoption(
        "--das-dtype",
        metavar="DTYPE",
        default="float32",
        type=_choice(("float32", "bfloat16", "float16")),
        help="float32, bfloat16 or float16. Default: 'float32'",
    )
    group.addoption(
        "--das-cache",
        metavar="MODE",
        default="readwrite",
        type=_choice(CACHE_MODES),
        help="alignment cache: off, read, write or readwrite. Default: 'readwrite'",
    )
    group.addoption(
        "--das-cache-dir",
        metavar="DIR",
        default=None,
        help="where cached alignments live. Default: <rootdir>/.das_assert/cache",
    )
    group.addoption(
        "--das-json",
        metavar="PATH",
        default=None,
        help="write the JSON report (schema in README) here",
    )
    group.addoption(
        "--das-markdown",
        metavar="PATH",
        default=None,
        help="write a Markdown table of the results here (e.g. $GITHUB_STEP_SUMMARY)",
    )
    group.addoption(
        "--das-inconclusive",
        metavar="ACTION",
        default="fail",
        type=_choice(INCONCLUSIVE),
        help="what an inconclusive verdict does: fail, xfail or pass. Default: 'fail'",
    )
    group.addoption(
        "--das-min-task-accuracy",
        metavar="P",
        type=_fraction,
        default=0.8,
        help="task accuracy below which a claim errors as a failed precondition. Default: 0.8",
    )
    group.addoption(
        "--das-plots",
        metavar="DIR",
        default=None,
        help="save heatmaps of search tests as PNG here (needs matplotlib)",
    )
    group.addoption(
        "--das-save-baseline",
        metavar="NAME",
        nargs="?",
        const="baseline",
        default=None,
        type=_baseline_name,
        help="save every claim's numbers and alignment as a new "
        "baseline NNNN_NAME of this model. Default NAME: 'baseline'",
    )
    group.addoption(
        "--das-compare",
        metavar="NAME",
        nargs="?",
        const="latest",
        default=None,
        type=_baseline_reference("--das-compare"),
        help="compare every claim with baseline NAME (latest, NNNN, NNNN_name, or the name it "
        "was saved under: release/v2) of "
        "this model, KEY/NAME of das.yaml's model KEY, or a baseline .json file: the numbers, "
        "and the frozen alignment transferred to this model",
    )
    group.addoption(
        "--das-frozen",
        metavar="NAME",
        nargs="?",
        const="latest",
        default=None,
        type=_baseline_reference("--das-frozen"),
        help="judge every claim, and every cell of a recorded search, with the alignment "
        "baseline NAME (as --das-compare takes it) saved for it, as trained on the model it was "
        "saved with: nothing is trained. A request it holds no alignment for (a new claim, "
        "other settings, a search it left out) fails",
    )
    group.addoption(
        "--das-compare-fail",
        metavar="EXPR",
        action="append",
        default=[],
        help="fail a claim whose IIA drops (a negative claim's rises): iia:0.05 (absolute) or "
        "iia:5%% (relative); also transfer, task_accuracy, normalized_iia, lead (IIA minus "
        "the no-op's); repeatable. Needs --das-compare",
    )
    group.addoption(
        "--das-warn-unused",
        action="store_true",
        default=False,
        help="a complete run that does not judge every claim of the baseline it compares "
        "with notes them instead of failing. Needs --das-compare",
    )
    group.addoption(
        "--das-baseline-dir",
        metavar="DIR",
        default=None,
        help="where baselines live. Default: <rootdir>/hypotheses/baselines",
    )
    group.addoption(
        "--das-profile",
        metavar="NAME",
        default=None,
        type=_choice(tuple(PROFILES)),
        help="hypothesis profile for the fuzz tests: ci (derandomized, few examples), "
        "dev or thorough. Default: 'ci'; an explicit --hypothesis-profile wins",
    )


OUTPUT_OPTIONS = {  # option: written as a directory?
    "--das-json": False,
    "--das-markdown": False,
    "--das-plots": True,
    "--das-baseline-dir": True,
}  # --das-cache-dir has its own check: with --das-cache=read it needs no writing


def check_output_paths(config: pytest.Config) -> None:
    """A report or directory that cannot be written, or heatmaps without matplotlib, are
    refused before the first alignment trains, not after the whole run."""
    from das_assert.store import output_path_problem

    written: dict[Path, str] = {}
    for option, given in (("--junitxml", "xmlpath"), ("--report-log", "report_log")):
        if value := getattr(config.option, given, None):  # pytest's own: one file each
            written[invocation_path(config, value).resolve()] = option
    for option, directory in OUTPUT_OPTIONS.items():
        value = config.getoption(option.lstrip("-").replace("-", "_"))
        if value is not None and not str(value).strip():
            raise pytest.UsageError(
                f"{option} is empty; name a path (an unset variable such as "
                "$GITHUB_STEP_SUMMARY expands to nothing)"
            )
        if value:
            anchored = invocation_path(config, value)
            problem = output_path_problem(anchored, directory=directory)
            if problem:
                raise pytest.UsageError(f"{option} {value}{problem}")
            where = anchored.resolve()
            if not directory and (clash := _baseline_in_the_way(config, where)):
                raise pytest.UsageError(f"{option} {value}{clash}")
            if where in written:
                raise pytest.UsageError(
                    f"{written[where]} and {option} both name {value}; name two paths"
                )
            written[where] = option
    if config.getoption("das_plots"):
        try:  # imported, not only found: one that fails to import failed after a search trained
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(
                f"--das-plots needs matplotlib ({exc}): pip install 'das_assert[plots]', or "
                "drop --das-plots"
            ) from None


_RUN_TOKEN = pytest.StashKey[str]()


def run_token(config: pytest.Config) -> str:
    """This run's token: made by the controller, handed to each pytest-xdist worker (in
    ``workerinput``), so that all of a run's processes save one baseline into one folder."""
    if _RUN_TOKEN not in config.stash:
        given = getattr(config, "workerinput", {}).get("das_run_token")
        config.stash[_RUN_TOKEN] = given or uuid.uuid4().hex
    return config.stash[_RUN_TOKEN]


def baseline_root(config: pytest.Config) -> Path:
    """``--das-baseline-dir``, else <rootdir>/hypotheses/baselines (one folder per model)."""
    given = config.getoption("das_baseline_dir")
    return invocation_path(config, given or Path(config.rootpath) / "hypotheses" / "baselines")


def invocation_path(config: pytest.Config, value: str | Path) -> Path:
    """A path option as the directory pytest was started in names it, as pytest reads
    ``--junitxml``: a test or conftest that changes the working directory does not move it
    (a baseline's JSON and its alignment files were saved into two places). Absolute: a
    message shows it with ``shown_path``."""
    return Path(config.invocation_params.dir) / Path(value).expanduser()


def read_once_path(config: pytest.Config, value: str | Path) -> Path:
    """``invocation_path`` for a file read at once (das.yaml, a model): as given, as messages
    show it, while the working directory is still where pytest started."""
    anchored = invocation_path(config, value)
    try:
        moved = Path.cwd() != Path(config.invocation_params.dir)
    except OSError:  # the working directory was deleted
        moved = True
    return anchored if moved else Path(value).expanduser()


def _baseline_in_the_way(config: pytest.Config, report: Path) -> str | None:
    """Why a report at ``report`` would destroy a baseline, else None: it is the baseline
    ``--das-compare`` reads, or lies in the baseline directory."""
    compare = config.getoption("das_compare")
    if (
        isinstance(compare, str)
        and compare.endswith(".json")
        and invocation_path(config, compare).resolve() == report
    ):
        return " is the baseline --das-compare reads; name another file"
    root = baseline_root(config)
    if report.is_relative_to(root.resolve()):
        shown = shown_path(root, Path(config.invocation_params.dir))
        return (
            f" is inside the baseline directory {shown}, where baselines and their alignments "
            "are kept; name a file elsewhere"
        )
    return None


# Options a verdict depends on: a failure's "reproduce:" line repeats those not at their default.
_VERDICT_OPTIONS = (
    "das_model",
    "das_config",
    "das_model_entry",
    "das_dtype",
    "das_device",
    "das_device_map",
    "das_min_task_accuracy",
    "das_inconclusive",
    "das_compare",
    "das_compare_fail",
    "das_frozen",
    "das_baseline_dir",
    "das_profile",  # a fuzz test's draws, and whether a failure is shrunk
    "hypothesis_profile",  # hypothesis's own options that change what a fuzz test draws
    "hypothesis_seed",
)


def reproduce_options(config: pytest.Config, resolved: dict[str, Path] | None = None) -> str:
    """`` --x=VALUE`` for each option a verdict depends on that is not at its default;
    ``--das-compare`` and ``--das-frozen`` as the baseline files they resolved to
    (``resolved``, by option name): ``latest`` or a NAME saved again would name another
    baseline once one more is saved."""
    import shlex

    resolved = resolved or {}
    words = []
    for name in _VERDICT_OPTIONS:
        value = config.getoption(name, None)  # hypothesis's are absent with its plugin off
        if value and name in resolved:
            value = shown_path(resolved[name], Path(config.invocation_params.dir))
        if value is None or value == DEFAULTS.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        for one in value if isinstance(value, list) else [value]:
            words.append(f"{flag}={shlex.quote(str(one))}")
    return "".join(f" {word}" for word in words)


def reproduce_threads(device: str, chosen: bool) -> str:
    """``OMP_NUM_THREADS=N `` before a failure's "reproduce:" line where this run's CPU thread
    count was ``chosen`` (an xdist worker's share, or ``OMP_NUM_THREADS`` set): the count rounds
    a CPU fit, so a rerun at torch's own count fits another alignment (the cache keys fits by
    it). Empty on a GPU, and where torch chose."""
    if not chosen or device.startswith(("cuda", "xpu")):
        return ""
    import torch

    return f"OMP_NUM_THREADS={torch.get_num_threads()} "


def shown_path(path: str | Path, start: Path) -> str:
    """``path`` relative to ``start`` (where pytest was started) where it lies under it, else
    absolute: a path a user can paste from there."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(start))
    except ValueError:
        return str(path)
