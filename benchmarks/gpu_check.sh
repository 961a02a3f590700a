#!/usr/bin/env bash
# GPU checks for a machine that has CUDA PyTorch but no internet and none of goodprior's own dependencies:
#   1. log-prob scoring speed and exactness (benchmarks/eval_speed.py) at batch 8 and 32;
#   2. the CLI end to end: `goodprior train` (TRL + PEFT, bf16) then `goodprior eval` (one-pass scoring) on CUDA.
# Both use an SmolLM2-shaped model with random weights: speed does not depend on the weights, and the 540 MB
# checkpoint need not travel.
#
# Prepare on a machine with the project's .venv (wheels for the GPU machine's Python, here 3.12):
#   mkdir -p .gpu/smollm2-config .gpu/data
#   cp ~/.cache/goodprior/models/smollm2-*/{config.json,generation_config.json,tokenizer*.json,chat_template.jinja} .gpu/smollm2-config/
#   cp -r runs/default/data/difficult-advice .gpu/data/            # any goodprior chat dataset
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 platformdirs==4.14.8 \
#     transformers==5.24.0 trl==1.16.0 datasets==5.2.0 peft==0.21.2 dill==0.4.1 multiprocess==0.70.19 datasketch==2.0.0
# Then on the GPU machine, from the repository root:  bash benchmarks/gpu_check.sh [OUT_DIR]
OUT=${1:-${OUT:-gpu-out}}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 GOODPRIOR_CACHE=/tmp/gpcache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

for cfg in "8 32" "32 64"; do
  set -- $cfg
  timeout 200 python3 benchmarks/eval_speed.py --model .gpu/smollm2-config --random-init --device cuda \
    --dtype bfloat16 --batch "$1" --instances "$2" --repeats 5 2>&1 | grep -v "Loading weights" | tee "$OUT/scoring_batch$1.txt"
done

python3 - <<'PY' || exit 1
import torch, transformers, datasets, trl, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__, "peft", peft.__version__,
      "datasets", datasets.__version__)
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(".gpu/smollm2-config")).save_pretrained("/tmp/m")
AutoTokenizer.from_pretrained(".gpu/smollm2-config").save_pretrained("/tmp/m")
PY
gp() { python3 -c 'from goodprior.cli import main; main()' "$@"; }
gp train --model /tmp/m --data .gpu/data/difficult-advice --tokens 15000 --out /tmp/adapter 2>&1 | tail -3
cp /tmp/adapter/train_summary.json "$OUT/"
gp eval --model /tmp/m --adapter /tmp/adapter --split heldout --limit 16 --batch-size 16 --device cuda --out /tmp/run \
  2>&1 | tail -25
cp /tmp/run/summary.md "$OUT/"
