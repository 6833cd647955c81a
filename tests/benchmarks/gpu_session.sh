#!/usr/bin/env bash
# One device call, from the repository root, on a GPU machine that has torch and transformers:
#   1. gpu_7b.py: das_assert vs pyvene 0.1.8 at Llama-7B shape (compare), into gpu_7b.json
#      (COMPARE=0 leaves it out: a second call in one session, when the first measured it);
#   2. `pytest hypotheses/` on the GPU (two xdist workers, --das-device cuda:worker, the search
#      trained jointly since 2026-12-04's last run) and one fit through device_map="auto"
#      (HYPOTHESES=1; off by default: they passed on an H200 on
#      2026-11-27 and 2026-12-04, and steps 1 and 3 alone fill most of one 10-minute device
#      call; their timeouts with step 1's add up to 410 s, so run them as a second call with
#      COMPARE=0 EXTRAS= );
#   3. gpu_7b.py's other stages (EXTRAS, default fast_path,rotation,syncs,windows,memory_peak,
#      memory_peak_warm,profile,dispatch,grid,batch_scaling,memory,cost_curve,compiled) into
#      gpu_7b_extras.json, as far as BUDGET_S allows (on 2026-12-04 the stages after the grid
#      were past it: the short ones and the grid first; `windows`, prefix passes of 1, 2 and 4
#      batches, `memory_peak_warm`, what is live at the peak of a fit after the comparison's
#      warm-ups, which peaked 0.77 GiB above a fresh process's, and `compiled`, the
#      torch.compile experiment, last because its compile time there is unknown, are new since).
# Carry pyvene's wheel in .whl/ (no internet there), with matplotlib's and networkx's (which
# `import pyvene` needs) where the machine lacks them: every wheel there is installed, without
# dependencies. Results go to $OUT. Exits 1 when a step failed or ran out of time.
set -u -o pipefail
failed=0
out=${OUT:?set OUT to the directory for the results}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
if ! why=$(python3 -c "import pyvene" 2>&1); then  # e.g. No module named 'matplotlib'
  echo "pyvene cannot be imported, so no comparison (carry the wheel it names in .whl/): ${why##*$'\n'}"
  failed=1
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3
# The scripts import das_assert from this checkout even where that install failed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${COMPARE:-1}" = 1 ]; then
  timeout "${COMPARE_S:-150}" python3 tests/benchmarks/gpu_7b.py --out "$out" 2>&1 \
    | tee "$out/gpu_7b.log" || { echo "gpu_7b.py compare: failed or timed out"; failed=1; }
fi
if [ "${HYPOTHESES:-0}" = 1 ]; then
  plugin=()  # where the editable install failed, load the plugin by name
  python3 -c "import importlib.metadata as m, sys
sys.exit(not any(e.name == 'das_assert' for e in m.entry_points(group='pytest11')))" \
    || plugin=(-p das_assert.plugin)
  timeout "${HYPOTHESES_S:-170}" python3 -m pytest hypotheses/ "${plugin[@]}" -q -p no:cacheprovider -n 2 \
    --dist loadfile --das-device cuda:worker --das-cache=off --das-joint-cells-mib=4096 \
    --das-json "$out/hypotheses_gpu.json" >"$out/hypotheses_gpu.log" 2>&1
  status=$?; echo "pytest hypotheses/ on the GPU: exit $status"; tail -8 "$out/hypotheses_gpu.log"
  [ "$status" = 0 ] || failed=1
  timeout 90 python3 -m das_assert fit --device-map auto --hypothesis left_boundary --layer 1 \
    --position last --n-train 320 --epochs 1 --n-test 200 --json "$out/device_map.json" \
    >"$out/device_map.log" 2>&1
  status=$?; echo "fit with device_map=auto: exit $status"; tail -6 "$out/device_map.log"
  [ "$status" = 0 ] || failed=1
fi
extras=${EXTRAS-fast_path,rotation,syncs,windows,memory_peak,memory_peak_warm,profile,dispatch,grid,batch_scaling,memory,cost_curve,compiled}
if [ -n "$extras" ]; then
  timeout "${EXTRAS_S:-320}" python3 tests/benchmarks/gpu_7b.py --out "$out" --name gpu_7b_extras \
    --stages "$extras" --budget-s "${BUDGET_S:-220}" 2>&1 | grep -v '^nnsight' | cut -c1-600 \
    || { echo "gpu_7b.py extras: failed or timed out"; failed=1; }
fi
[ -f "$out/gpu_7b.log" ] && grep -v '^nnsight' "$out/gpu_7b.log" | tail -8
exit "$failed"
