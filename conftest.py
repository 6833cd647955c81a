"""Root fixtures for the hypothesis files.

``alpaca`` is the model under test: the directory named by ``--das-model`` or ``$DAS_MODEL``,
else the embedded price-tagging model that ships with das_assert (a small LLaMA-architecture
stand-in trained from scratch; see das_assert/embedded/price_tagger/README.md). Both load through
``AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)``.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def alpaca(das_session):
    """The model under test, loaded once per session."""
    return das_session.model
