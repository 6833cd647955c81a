"""Load a local Hugging Face causal LM (the embedded model or any directory) and fingerprint it.

There is one loading path: ``AutoModelForCausalLM.from_pretrained(path, local_files_only=True)``.
The embedded price-tagging model is just a directory inside the package, loaded the same way a
real Alpaca directory is. Nothing here reaches a model hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from das_assert.canonical import canonical_config, canonical_tokenizer_config
from das_assert.digests import DigestMemo, file_sha256
from das_assert.errors import InvalidArgument, ModelLoadError, did_you_mean, shown_value
from das_assert.model_files import (
    load_config,
    load_tokenizer,
    refuse_lfs_pointers,
    tokenized,
    transformers_errors_only,
)
from das_assert.weight_checks import (
    loaded_weight_files,
    loading_out_of_memory,
    mismatched_shapes_error,
    refuse_partial_weights,
    refuse_pickled_weights,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_MODEL_DIR",
    "LoadedModel",
    "answer_token_id",
    "available_cpus",
    "load_model",
    "resolve_model_path",
    "worker_threads",
]

EMBEDDED_MODEL_DIR = Path(__file__).parent / "embedded" / "price_tagger"
DTYPES = ("float32", "bfloat16", "float16")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
)
# Read only where no tokenizer.json holds the whole tokenizer: then they add or name tokens.
_TOKENIZER_EXTRAS = ("special_tokens_map.json", "added_tokens.json")


def resolve_model_path(path: str | Path) -> Path:
    """``"embedded"`` means the shipped model; anything else must be a local model directory."""
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument(
            f"path={shown_value(path)}: a local model directory, or 'embedded' for the shipped "
            "model"
        )
    if str(path) == "embedded":
        return EMBEDDED_MODEL_DIR
    resolved = Path(path).expanduser()
    if resolved.resolve() == EMBEDDED_MODEL_DIR.resolve():  # by a relative path or a link
        return EMBEDDED_MODEL_DIR  # its das.yaml entry, baselines and name are "embedded"'s
    if not resolved.exists():
        raise ModelLoadError(
            f"model directory {str(path)!r} does not exist; pass a local Hugging Face model "
            "directory (with config.json and weights) or 'embedded' for the shipped model"
        )
    if not resolved.is_dir():
        raise ModelLoadError(
            f"{str(path)!r} is a file, not a model directory; pass the folder that holds "
            "config.json and the weights"
        )
    if not (resolved / "config.json").is_file():
        raise ModelLoadError(
            f"{str(path)!r} has no config.json, so it is not a Hugging Face model directory; "
            "save the model with save_pretrained() or point at the folder that holds config.json"
        )
    if not any((resolved / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{str(path)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the "
            "tokenizer next to the model with tokenizer.save_pretrained(dir)"
        )
    return resolved


@dataclass(eq=False)
class LoadedModel:
    """A loaded model, its tokenizer, and where it came from."""

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {self.config.model_type}, {self.dtype}, {self.device})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis and IPython print dataclasses field by field

    model: Any
    tokenizer: Any
    path: Path
    dtype: str
    device: str
    _answer_ids: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    #: Where the weight files' digests are remembered between sessions (None: hash every time).
    digest_memo: DigestMemo | None = field(default=None, repr=False)
    #: The model as it was made (``model_state.model_snapshot``): a cache= run refuses it changed.
    at_load: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.at_load is None and self.model is not None:
            from das_assert.model_state import model_snapshot

            self.at_load = model_snapshot(self.model)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def name(self) -> str:
        return "embedded" if self.path == EMBEDDED_MODEL_DIR else str(self.path)

    @property
    def input_device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    @cached_property
    def fingerprint(self) -> dict[str, str]:
        """sha256 of the weight files, of the tokenizer files, and of config.json with the
        model's own Python files (``*.py``, run only with ``trust_remote_code``).

        The JSON files count by what they set, not by what ``save_pretrained`` writes down about
        itself (``das_assert.canonical``), so the same model saved again keeps its fingerprint, and
        its cached alignments. Each weight file is read once, in 4 MiB chunks, and the digest is
        kept for the session; with a ``digest_memo`` it is read again only when the file has
        changed.
        """
        digest = self.digest_memo.sha256 if self.digest_memo is not None else file_sha256
        weights = hashlib.sha256()
        for file in loaded_weight_files(self.path):  # not an adapter or cache entry beside them
            if file.is_file():
                weights.update(file.name.encode() + digest(file).encode())
        tokenizer = hashlib.sha256()
        whole = (self.path / "tokenizer.json").is_file()
        for name in TOKENIZER_FILES + ((), _TOKENIZER_EXTRAS)[not whole]:
            if (self.path / name).is_file():
                content = (self.path / name).read_bytes()
                if name == "tokenizer_config.json":
                    content = canonical_tokenizer_config(json.loads(content), self.path)
                tokenizer.update(name.encode() + content)
        config = json.loads((self.path / "config.json").read_bytes())
        config_hash = hashlib.sha256(canonical_config(config))
        for code in sorted(self.path.glob("*.py")):  # none in a model without custom code
            if code.is_file():  # a link to /dev/zero would be read without end
                config_hash.update(code.name.encode() + code.read_bytes())
        return {
            "weights": weights.hexdigest()[:16],
            "tokenizer": tokenizer.hexdigest()[:16],
            "config": config_hash.hexdigest()[:16],
        }

    def describe(self) -> dict[str, Any]:
        """The ``model`` block of a report."""
        cfg = self.config
        return {
            "path": self.name,
            "fingerprint": dict(self.fingerprint),  # a copy: cache keys read the model's own
            "dtype": self.dtype,
            "device": self.device,
            "architecture": cfg.model_type,
            "n_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size,
        }

    def answer_id(self, prompt: str, answer: str) -> int:
        """The token id of ``answer`` right after ``prompt`` (see ``answer_token_id``)."""
        key = (prompt[-16:], answer)
        if key not in self._answer_ids:
            self._answer_ids[key] = answer_token_id(self.tokenizer, prompt, answer)
        return self._answer_ids[key]


#: Where a user gives other answer words, as errors about them say.
ANSWER_OPTIONS = (
    "--answers TRUE FALSE on the command line; under pytest, das.yaml's answers: [TRUE, FALSE] "
    "in this model's entry, or the fmt=PriceFormat(answers=(...)) of an align(...) call"
)


def answer_token_id(tokenizer: Any, prompt: str, answer: str) -> int:
    """The single token the model must produce after ``prompt`` to answer ``answer``.

    One rule for every tokenizer: tokenize ``prompt`` and ``prompt + answer`` and take the tokens
    the answer adds. That gives ``Yes`` after a newline for LLaMA's SentencePiece and `` Yes``
    after a space for GPT-2 style BPE, without knowing either convention.

    Raises:
        InvalidArgument: when the answer adds more than one token, or changes the prompt's tokens.
    """
    prompt_ids = tokenized(tokenizer, prompt, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {tokenizer.unk_token_id}
    if not set(prompt_ids) - special:  # no answer word could mend this
        raise InvalidArgument(
            f"the tokenizer turns the {len(prompt)}-character prompt into "
            f"{tokenizer.convert_ids_to_tokens(prompt_ids[:8])}: special or unknown tokens "
            "only. Its files do not load as the tokenizer the model was trained with; check "
            "tokenizer_config.json's tokenizer_class and tokenizer.json, and what "
            "AutoTokenizer.from_pretrained(DIR) makes of a prompt"
        )
    full_ids = tokenized(tokenizer, prompt + answer, add_special_tokens=False)["input_ids"]
    added = full_ids[len(prompt_ids) :]
    keeps_prompt = full_ids[: len(prompt_ids)] == prompt_ids
    if keeps_prompt and not added:  # the word was dropped
        raise InvalidArgument(
            f"the tokenizer adds no token for the answer {answer!r} after the prompt: it drops "
            f"the word. Its files do not load as a tokenizer that knows it; check "
            "tokenizer_config.json and tokenizer.json (vocabulary, normalizer), and what "
            f"AutoTokenizer.from_pretrained(DIR)({answer!r}) gives"
        )
    if not keeps_prompt:
        # "Answer: " + "Yes": a byte-level BPE reads " Yes" as one token, the space included
        trailing = prompt[len(prompt.rstrip()) :]
        advice = (
            f"this tokenizer reads the prompt's trailing {trailing!r} and the answer as one "
            f"token: end the prompt template without {trailing!r} (--prompt-template, or "
            f"das.yaml's prompt_template: under pytest) and give answer words that start with a "
            f"space ({' ' + answer!r} and the other likewise: {ANSWER_OPTIONS})"
            if trailing
            else "end the prompt in a separator (a newline or space), or choose answer words "
            f"that start a token ({ANSWER_OPTIONS})"
        )
        raise InvalidArgument(
            f"the answer {answer!r} merges with the prompt's last token for this tokenizer "
            f"(the prompt ends {tokenizer.convert_ids_to_tokens(prompt_ids[-3:])}, with the "
            f"answer {tokenizer.convert_ids_to_tokens(full_ids[len(prompt_ids) - 3 :])}), so "
            f"no single token answers it; {advice}"
        )
    if len(added) != 1:
        pieces = tokenizer.convert_ids_to_tokens(added)
        raise InvalidArgument(
            f"the answer {answer!r} is not a single token after the prompt for this tokenizer "
            f"(it adds {pieces}); choose answer words that are one token each ({ANSWER_OPTIONS})"
        )
    if tokenizer.unk_token_id is not None and added[0] == tokenizer.unk_token_id:
        raise InvalidArgument(
            f"the answer {answer!r} is unknown to the tokenizer "
            f"(it maps to {tokenizer.unk_token!r}); choose answer words in the tokenizer's "
            f"vocabulary ({ANSWER_OPTIONS})"
        )
    return int(added[0])


def load_model(
    path: str | Path = "embedded",
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its fast tokenizer from a local directory, frozen and in eval mode.

    Args:
        path: a local model directory, or ``"embedded"`` for the shipped price-tagging model.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (or the torch.dtype).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (or the torch.device); ignored when
            ``device_map`` is given.
        device_map: e.g. ``"auto"`` to spread a large model over the visible GPUs (accelerate).
        trust_remote_code: run the model's own Python code; off unless you ask for it.
    """
    if not isinstance(trust_remote_code, bool):  # "false" is truthy: it would run the code
        raise InvalidArgument(
            f"trust_remote_code={trust_remote_code!r}: True or False (running the model's own "
            "code is never switched on by a string or a number)"
        )
    directory = resolve_model_path(path)
    dtype, device, device_map = _checked_placement(dtype, device, device_map)
    refuse_lfs_pointers(directory)
    config = load_config(directory, trust_remote_code)
    tokenizer = load_tokenizer(directory, trust_remote_code)
    refuse_pickled_weights(directory)
    model = _load_weights(directory, config, dtype, device_map, trust_remote_code)
    if device_map is None:
        try:
            model.to(device)
        except RuntimeError as exc:  # a GPU too small for the model
            if out_of_memory := loading_out_of_memory(exc, directory, config, dtype):
                raise out_of_memory from None
            raise
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=directory,
        dtype=dtype,
        device=device if device_map is None else f"device_map={device_map}",
    )


def _checked_placement(
    dtype: Any, device: Any, device_map: str | None
) -> tuple[str, str, str | None]:
    """``(dtype, device, device_map)`` as names, each checked: a torch.dtype or torch.device is
    taken as the name it stands for."""
    import torch

    if isinstance(dtype, torch.dtype):  # torch.float32 -> "float32", the name it stands for
        dtype = str(dtype).removeprefix("torch.")
    if isinstance(device, torch.device):  # torch.device("cuda", 0) -> "cuda:0"
        device = str(device)
    if not isinstance(dtype, str):
        raise InvalidArgument(f"dtype={dtype!r}: one of {', '.join(DTYPES)}")
    if dtype not in DTYPES:
        raise InvalidArgument(
            f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}."
            + did_you_mean(dtype, DTYPES)
        )
    if device_map is None:
        _check_device(device)
    else:
        device_map = _check_device_map(device_map)
    return dtype, device, device_map


def _load_weights(
    directory: Path, config: Any, dtype: str, device_map: str | None, trust_remote_code: bool
) -> Any:
    """The model from its safetensors weights, every weight of the config present."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bars = _progress_bars()  # its shards' bar: off while it loads, then the caller's as they were
    hf_logging.disable_progress_bar()
    # errors only: its table of missing weights, which our error says once
    with transformers_errors_only():
        try:
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                directory,
                config=config,
                dtype=getattr(torch, dtype),
                device_map=device_map,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                output_loading_info=True,
            )
        except (ValueError, OSError, RuntimeError, SafetensorError) as exc:
            if device_map is not None and "accelerate" in str(exc).lower():
                raise ModelLoadError(
                    f"device_map={device_map!r} needs the accelerate package: pip install "
                    "accelerate, or load the model on one device without a device map"
                ) from None
            if mismatch := mismatched_shapes_error(directory, config):
                raise mismatch from None
            if out_of_memory := loading_out_of_memory(exc, directory, config, dtype):
                raise out_of_memory from None
            if trust_remote_code and ".py" in str(exc):  # auto_map names a file that is not there
                raise ModelLoadError(
                    f"cannot load the model's own code in {str(directory)!r}: {exc}; its config's "
                    "auto_map names a Python file that must lie in the directory"
                ) from None
            raise ModelLoadError(
                f"cannot load the weights in {str(directory)!r}: {exc}; the weight files are "
                "missing or damaged: re-save the model with save_pretrained(dir)"
            ) from None
        except (TypeError, ArithmeticError) as exc:  # 4.x builds from values 5.x's config refuses
            raise ModelLoadError(
                f"the config.json in {str(directory)!r} holds a value transformers rejects: "
                f"{str(exc).rstrip('.')}; restore the model's own config.json"
            ) from None
        finally:
            _restore_progress_bars(bars)
    model, loading = loaded  # output_loading_info: the model and what loading found missing
    refuse_partial_weights(directory, config, model, loading)
    return model


def worker_device(device: str, *, worker: str | None, gpus: int) -> str:
    """``cuda:worker`` -> ``cuda:N``, N from the pytest-xdist worker id (``gw3`` -> 3) modulo the
    number of GPUs, so that ``pytest -n <GPUs> --das-device cuda:worker`` puts one worker on each
    GPU. Outside xdist (no worker id) it is ``cuda:0``. Any other device is returned unchanged."""
    if device != "cuda:worker":
        return device
    if gpus < 1:
        raise InvalidArgument(
            "--das-device cuda:worker needs CUDA GPUs and this machine has none; use cpu"
        )
    number = worker[2:] if worker and worker.startswith("gw") else "0"
    if not number.isdigit():
        raise InvalidArgument(f"cannot read a worker number from PYTEST_XDIST_WORKER={worker!r}")
    return f"cuda:{int(number) % gpus}"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_threads(environ: Mapping[str, str], cpus: int) -> int | None:
    """Torch CPU threads for one pytest-xdist worker: its share of the ``cpus``, so that ``-n N``
    does not run N workers of all-cores thread pools against each other (on 2 cores, two workers
    of two threads each ran the hypotheses 1.7x slower than workers of one thread).

    None where there is nothing to split (not an xdist worker) or the user chose the thread count
    (``OMP_NUM_THREADS``, which torch reads itself)."""
    workers = environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if "OMP_NUM_THREADS" in environ or not workers.isdigit() or int(workers) < 1:
        return None
    return max(1, cpus // int(workers))


_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_device_map(device_map: Any) -> Any:
    """A device map is one of accelerate's strategies, one device, or a mapping; returned as
    transformers takes it (a GPU number as an int). A CUDA device must be there: without one,
    torch failed the load with an assertion."""
    if not isinstance(device_map, str):
        return device_map  # a {module: device} mapping: accelerate checks its entries
    if device_map in _DEVICE_MAPS or re.fullmatch(r"cpu|xpu(:\d+)?", device_map):
        return device_map
    if device_map.isdigit():  # transformers read the string "0" as no device it knew
        _check_device(f"cuda:{device_map}", "device_map", given=device_map)
        return int(device_map)
    if re.fullmatch(r"cuda(:\d+)?", device_map):
        _check_device(device_map, "device_map")
        return device_map
    raise InvalidArgument(
        f"device_map={device_map!r} is not a device map; use one of {', '.join(_DEVICE_MAPS)}, "
        "or one device such as cuda:0." + did_you_mean(device_map, _DEVICE_MAPS)
    )


def _check_device(device: str, what: str = "device", *, given: str | None = None) -> None:
    """Refuse a ``device`` (``what``: ``device`` or ``device_map``, ``given`` as written where
    it was read as another name) that is not there."""
    import torch

    if not isinstance(device, str):
        raise InvalidArgument(f"{what}={device!r}: one of cpu, cuda, cuda:N")
    if device == "cpu":
        return
    if re.fullmatch(r"cuda(:\d+)?", device):  # not cuda:, cuda0 nor cudax
        if not torch.cuda.is_available():
            shown = f"{what}={device if given is None else given!r}"
            advice = (
                "leave the device map out to load on the CPU (--das-device-map under pytest, "
                "--device-map on the command line)"
                if what == "device_map"
                else "use the CPU (--das-device cpu under pytest, --device cpu on the command line)"
            )
            raise InvalidArgument(f"{shown} but no CUDA device is available here; {advice}")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise InvalidArgument(
                f"{what}={device!r}: this machine has {torch.cuda.device_count()} CUDA devices "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return
    raise InvalidArgument(f"{what}={device!r} is not one of cpu, cuda, cuda:N")


def _progress_bars() -> tuple[bool, bool]:
    """Whether transformers' and huggingface_hub's progress bars are on: transformers' switch
    turns both, so each is put back by its own library's."""
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    return hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()


def _restore_progress_bars(bars: tuple[bool, bool]) -> None:
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    transformers_on, hub_on = bars
    (hf_logging.enable_progress_bar if transformers_on else hf_logging.disable_progress_bar)()
    (enable_progress_bars if hub_on else disable_progress_bars)()
