"""das_assert vs pyvene 0.1.8 at Llama-7B shape on one GPU: random weights, bf16, one script.

Builds a ``LlamaForCausalLM`` with the Llama-7B ``LlamaConfig`` (random weights: nothing is
downloaded) and the embedded model's tokenizer, then runs ``bench_pyvene.compare`` at one site:
step time, examples/s and peak GPU memory above the weights, for both, in one process. Writes
``gpu_7b.json`` to ``--out``. On an H100/H200 it should take a few minutes (model init included).

    pip install --no-deps pyvene-0.1.8-py3-none-any.whl      # a carried wheel; no internet
    python tests/benchmarks/gpu_7b.py --out $OUT

``--shape tiny --device cpu`` runs the same code at a toy shape, as a check that the script works
(the library's tests do this). With random weights IIA means nothing; compare the timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

SHAPES = {
    # Llama-7B (Touvron et al. 2023): the shape of Alpaca-7B.
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
    },
}


def build(shape: str, device: str, dtype: torch.dtype) -> object:
    """A randomly initialised Llama of ``shape`` with the embedded tokenizer, as a LoadedModel."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from das_assert.models import EMBEDDED_MODEL_DIR, LoadedModel

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR, local_files_only=True)
    tokenizer.padding_side = "right"
    dims = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=max(32000, len(tokenizer)),
        num_key_value_heads=dims["num_attention_heads"],
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=None,
        **dims,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval().requires_grad_(False)
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    return LoadedModel(model, tokenizer, Path(f"<random llama {shape}>"), name, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--position", default="last-1")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-test", type=int, default=64)
    args = parser.parse_args(argv)
    import bench_pyvene

    started = time.perf_counter()
    model = build(args.shape, args.device, getattr(torch, args.dtype))
    build_seconds = time.perf_counter() - started
    result = bench_pyvene.compare(model, args.layer, args.position, **bench_pyvene.data_sizes(args))
    result.update(
        shape=args.shape,
        dtype=args.dtype,
        build_seconds=round(build_seconds, 1),
        gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        torch=torch.__version__,
    )
    print(bench_pyvene.table(result))
    if result["gpu_memory"]:
        memory = result["gpu_memory"]
        print(
            f"peak GPU memory above the weights ({memory['weights_gib']:.2f} GiB): das_assert "
            f"{memory['das_assert_peak_gib'] - memory['weights_gib']:.2f} GiB, pyvene "
            f"{memory['pyvene_peak_gib'] - memory['weights_gib']:.2f} GiB, ratio "
            f"{memory['ratio_above_weights']:.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_7b.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
