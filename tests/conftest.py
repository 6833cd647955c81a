"""Shared fixtures of the library's own tests: tiny random models saved as real model directories.

Every tiny model is written with ``save_pretrained`` and loaded back through ``load_model``, the
same path as the embedded model and a real Alpaca directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _share_the_cpus_between_xdist_workers() -> None:
    """Under ``-n N``, give this worker and every process its tests start (the CLI, pytest in a
    subprocess) ``OMP_NUM_THREADS`` of its share of the CPUs, as the plugin does for its own
    workers' fits.

    Without it, each of those processes ran torch's thread pool over all the cores while the
    other workers did the same: on 2 cores, ``-n 2`` took longer than one process did. With it,
    ``pytest tests/ -n 2`` takes about half the time. A count the user set is kept.
    """
    from das_assert.models import available_cpus, worker_threads

    threads = worker_threads(os.environ, available_cpus())
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # it read the variable at import
        sys.modules["torch"].set_num_threads(threads)


_share_the_cpus_between_xdist_workers()

# The library's own property tests: the same examples on every run (CI must not flake), no
# deadline (a model pass on 2 shared cores varies), few examples unless a test asks for more.
settings.register_profile(
    "das-library",
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("das-library")

ARCHITECTURES = ("llama", "gpt2", "gpt_neox")


def _config(arch: str, vocab_size: int, pad_id: int, bos_id: int):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=pad_id,
            bos_token_id=bos_id,
            eos_token_id=None,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=256,
            pad_token_id=pad_id,
            bos_token_id=bos_id,
            eos_token_id=bos_id,
        )
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=256,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
    )


def make_tiny_model_dir(directory: Path, arch: str, seed: int = 0) -> Path:
    """Save a tiny random ``arch`` model with the embedded tokenizer into ``directory``."""
    import torch
    from transformers import AutoModelForCausalLM

    from das_assert.embedded.recipe import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = _config(arch, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``arch -> directory`` of a tiny random model for each architecture."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: make_tiny_model_dir(root / arch, arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    """``arch -> LoadedModel`` of the tiny random models."""
    from das_assert.models import load_model

    return {arch: load_model(path) for arch, path in tiny_model_dirs.items()}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture
def imported_models_files_let_go() -> Iterator[None]:
    """A causal models file imported by the test (``--causal-models``, ``import_causal_models``)
    leaves its folder on ``sys.path`` and its modules in ``sys.modules``, as a CLI run keeps
    them: after the test, the folders it added and the modules imported from them go (they
    stayed for the rest of the session, in a tmp folder pytest deletes)."""
    path = list(sys.path)
    yield
    added = [Path(entry) for entry in sys.path if entry not in path]
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and any(folder in Path(file).parents for folder in added):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _inner_runs_are_not_xdist_workers(request: pytest.FixtureRequest) -> None:
    """A ``pytester`` run inside an xdist worker inherits the worker's environment, and plugins
    there (pytest-benchmark) then act as if the inner run were distributed too. Each inner run
    is a plain pytest run, whether or not the library's tests are spread with ``-n``."""
    if "pytester" not in request.fixturenames:
        return
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name in [n for n in os.environ if n.startswith("PYTEST_XDIST_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def what_a_fit_imports() -> None:
    """What torch and transformers import lazily on a model's first fit, imported before the
    first in-process pytester run: imported again in a later run (its snapshot dropped them), torch
    registered its operators twice, with a warning that is an error here."""
    from das_assert.experiment import Experiment, run_experiment
    from das_assert.fit import FitConfig
    from das_assert.models import load_model
    from das_assert.sites import Site

    experiment = Experiment(
        hypothesis="left_boundary", site=Site(0), n_train=16, n_test=16, min_task_accuracy=0
    )
    run_experiment(load_model("embedded"), experiment, FitConfig(epochs=1, batch_size=16))
