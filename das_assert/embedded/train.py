"""Train the embedded price-tagging model from scratch, deterministically from a seed.

``python -m das_assert train-embedded --out DIR`` runs this. The result is an ordinary Hugging Face
model directory (``config.json``, ``model.safetensors``, tokenizer files) that loads with
``AutoModelForCausalLM.from_pretrained(DIR, local_files_only=True)``, the same path as Alpaca.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from das_assert.errors import OutputWriteError
from das_assert.store import NEW_DIRECTORY_MODE, write_failure

__all__ = ["TrainConfig", "train_embedded"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Architecture and optimisation settings of the embedded model."""

    seed: int = 0
    steps: int = 3500
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 200
    final_lr_fraction: float = 0.05  # cosine decay to this fraction; steadies the last evals
    weight_decay: float = 0.01
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    threads: int = 2  # CPU float sums depend on the thread count; fixed for reproducibility
    focus_steps: int = 800  # second phase: amounts close to a bound, fresh optimizer
    focus_lr: float = 5e-4
    focus_close_to_bound: float = 0.5


def _lr_at(step: int, cfg: TrainConfig) -> float:
    import math

    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * cosine)


def _batch(tokenizer, examples):
    import torch

    texts = [fmt.render(inputs).text for fmt, inputs in examples]
    answers = [fmt.answer(inputs["lo"] <= inputs["x"] <= inputs["hi"]) for fmt, inputs in examples]
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    labels = torch.tensor(tokenizer.convert_tokens_to_ids(answers))
    last = encoded["attention_mask"].sum(dim=1) - 1
    return encoded, labels, last


def _phase(
    model: Any,
    tokenizer: Any,
    rng: random.Random,
    cfg: TrainConfig,
    steps: int,
    lr: float,
    close_to_bound: float,
    started: float,
    log_every: int,
    first_step: int = 0,
) -> list[dict[str, Any]]:
    """One training phase with a fresh AdamW and its own warm-up and cosine decay."""
    import torch

    from das_assert.embedded.recipe import training_example

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    schedule = replace(cfg, steps=steps, lr=lr)
    history = []
    running_loss, running_correct = 0.0, 0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, schedule)
        examples = [
            training_example(rng, close_to_bound=close_to_bound) for _ in range(cfg.batch_size)
        ]
        encoded, labels, last = _batch(tokenizer, examples)
        logits = model(**encoded).logits[torch.arange(len(labels)), last]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running_loss += loss.item()
        running_correct += int((logits.argmax(-1) == labels).sum())
        if (step + 1) % log_every == 0:
            entry = {
                "step": first_step + step + 1,
                "seconds": round(time.perf_counter() - started, 1),
                "loss": round(running_loss / log_every, 4),
                "train_accuracy": round(running_correct / (log_every * cfg.batch_size), 4),
            }
            history.append(entry)
            print(json.dumps(entry), flush=True)
            running_loss, running_correct = 0.0, 0
    return history


def train_embedded(
    out_dir: Path, cfg: TrainConfig = TrainConfig(), *, log_every: int = 100
) -> dict:
    """Train, save the model directory to ``out_dir`` and return the training log."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from das_assert.embedded.recipe import build_tokenizer

    refuse_a_full_directory(Path(out_dir))  # before the half hour of training, not after
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    started = time.perf_counter()
    history = _phase(model, tokenizer, rng, cfg, cfg.steps, cfg.lr, 0.0, started, log_every)
    focus_rng = random.Random(f"focus:{cfg.seed}")  # phase 1 is unchanged by phase 2's draws
    focus = replace(cfg, warmup_steps=min(cfg.warmup_steps, cfg.focus_steps // 10))
    history += _phase(
        model,
        tokenizer,
        focus_rng,
        focus,
        cfg.focus_steps,
        cfg.focus_lr,
        cfg.focus_close_to_bound,
        started,
        log_every,
        first_step=cfg.steps,
    )
    log = {
        "config": asdict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "torch": torch.__version__,
    }
    _save_whole(Path(out_dir), model, tokenizer, log)
    return log


def _save_whole(out_dir: Path, model: Any, tokenizer: Any, log: dict) -> None:
    """Write the model directory so that an interrupted save leaves no loadable half model.

    A new ``out_dir`` is written beside it and renamed into place. An existing empty one (``.``,
    a symlink to a folder) is kept: the files are written in a staging folder inside it and
    moved up one by one, ``config.json`` last, so that a directory without it is not a model.
    """
    refuse_a_full_directory(out_dir)
    exists = out_dir.is_dir()
    if not exists:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    where = out_dir if exists else out_dir.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.resolve().name}.", dir=where))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _portable_tokenizer_class(staging)
        (staging / "training_log.json").write_text(
            json.dumps(log, indent=1) + "\n", encoding="utf-8"
        )
        if exists:
            files = sorted(staging.iterdir(), key=lambda f: f.name == "config.json")
            for file in files:
                os.replace(file, out_dir / file.name)
            staging.rmdir()
        else:
            staging.chmod(NEW_DIRECTORY_MODE)  # mkdtemp's 0700 would hide the model from others
            os.replace(staging, out_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):  # disk full
            raise OutputWriteError(write_failure(out_dir, exc)) from None
        raise


def refuse_a_full_directory(out_dir: Path) -> None:
    """A model directory is written only where no file is: never over another model."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already holds files; name a new or empty directory")


def _portable_tokenizer_class(out_dir: Path) -> None:
    """Name the tokenizer's class by the name both transformers 4.x and 5.x know.

    transformers 5 saves a fast tokenizer as ``TokenizersBackend``, a class 4.x does not have,
    so the model would not load under the 4.57 this package supports. ``PreTrainedTokenizerFast``
    is the same class in 5.x (an alias) and tokenizes identically under both."""
    path = out_dir / "tokenizer_config.json"
    config = json.loads(path.read_bytes())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
