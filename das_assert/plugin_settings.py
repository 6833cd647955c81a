"""Which das.yaml and which of its model entries a pytest run uses: ``--das-config``, else the
das.yaml beside the hypothesis files, else ``hypotheses/das.yaml``; the model from
``--das-model``, ``$DAS_MODEL`` or the embedded one. Read by the session fixture, and once
before it by the plugin's check of the claims that tests name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "das_test_files",
    "early_settings",
    "find_config",
    "model_path",
    "model_settings",
    "session_settings",
]

_EARLY_SETTINGS = pytest.StashKey[Any]()


def early_settings(item: pytest.Item) -> Any:
    """This run's model settings as the session fixture will read them, or None where they
    cannot be read (the fixture then says why). Read once per run."""
    config = item.config
    if _EARLY_SETTINGS not in config.stash:
        from das_assert.errors import DasError

        try:
            config.stash[_EARLY_SETTINGS] = model_settings(config, item.session)
        except DasError:
            config.stash[_EARLY_SETTINGS] = None
    return config.stash[_EARLY_SETTINGS]


def session_settings(config: pytest.Config, session: pytest.Session) -> Any:
    """``model_settings``, read once per run: those ``early_settings`` read, where it could."""
    early = config.stash.get(_EARLY_SETTINGS, None)
    return early if early is not None else model_settings(config, session)


def model_path(config: pytest.Config) -> str:
    """The model under test: ``--das-model``, else ``$DAS_MODEL``, else the embedded one.

    Raises:
        SetupError: ``$DAS_MODEL`` set but empty, where a das test needs the model (a run of
            other tests alone, in the same environment, is not refused).
    """
    from das_assert.arg_types import empty_model_variable
    from das_assert.errors import SetupError

    if not config.getoption("das_model") and (empty := empty_model_variable()):
        raise SetupError(empty)
    given = config.getoption("das_model") or os.environ.get("DAS_MODEL") or "embedded"
    if given == "embedded" or os.path.isabs(given):
        return given
    from das_assert.plugin_options import read_once_path

    return str(read_once_path(config, given))  # a directory named from where pytest started


def model_settings(config: pytest.Config, session: pytest.Session) -> Any:
    """The das.yaml entry of the model under test (``settings.ModelSettings``).

    Raises:
        DasError: das.yaml missing or invalid, the model directory missing, no entry for it.
    """
    from das_assert.models import EMBEDDED_MODEL_DIR, resolve_model_path
    from das_assert.settings import find_model_settings, load_settings

    settings_file = find_config(config, das_test_files(session))
    directory = resolve_model_path(model_path(config))
    return find_model_settings(
        load_settings(settings_file),
        directory,
        embedded=directory == EMBEDDED_MODEL_DIR,
        key=config.getoption("das_model_entry"),
    )


def find_config(config: pytest.Config, test_files: list[Path]) -> Path:
    """``--das-config``, else the das.yaml beside the hypothesis files that use the model (one
    for them all: the model and its settings are the session's), else hypotheses/das.yaml."""
    from das_assert.errors import ConfigError

    explicit = config.getoption("das_config")
    if explicit:
        from das_assert.plugin_options import read_once_path

        if not read_once_path(config, explicit).exists():
            raise ConfigError(
                f"--das-config={explicit}: no such file; give the path of a das.yaml, or leave "
                "the option out to use the das.yaml beside the hypothesis files"
            )
        return read_once_path(config, explicit)
    beside = sorted({f.parent / "das.yaml" for f in test_files})
    found = [candidate for candidate in beside if candidate.is_file()]
    if len(found) > 1:
        raise ConfigError(
            f"the hypothesis files of this run have different das.yaml files "
            f"({', '.join(map(str, found))}); run each directory on its own, or pass "
            "--das-config=PATH"
        )
    if found:
        return found[0]
    fallback = Path(config.rootpath) / "hypotheses" / "das.yaml"
    if fallback.is_file():
        return fallback
    raise ConfigError(
        f"no das.yaml found (looked at {', '.join(map(str, [*beside, fallback]))}); pass "
        "--das-config=PATH"
    )


def das_test_files(session: pytest.Session) -> list[Path]:
    """The files of the collected tests that use the model (the ``das_session`` fixture)."""
    return [
        Path(str(item.path))
        for item in session.items
        if "das_session" in getattr(item, "fixturenames", ())
    ]
