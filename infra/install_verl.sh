#!/usr/bin/env bash
# Put verl 0.7.1 and the modules it imports into a separate folder (default /tmp/verl-pkgs) for
# tests/integrations/test_verl_sampler.py, never into the project's venv.
#
#   bash infra/install_verl.sh [TARGET]     # then: SPACE_VERL_PKGS=TARGET pytest tests/integrations
#
# Why not the venv: `pip install --dry-run verl==0.9.*` against infra/constraints.txt fails (verl 0.9.x needs
# transformers <5.11, the pinned set has 5.19) and verl 0.7.1 needs numpy <2. Why 0.7.1: the verl wheels 0.8.0,
# 0.9.0 and 0.9.1 no longer ship verl/experimental/dataset/sampler.py (AbstractCurriculumSampler). --no-deps keeps
# torch, ray, numpy, datasets and transformers from the venv; antlr4 4.9.3 (omegaconf's) lives only in TARGET.
set -euo pipefail
TARGET="${1:-/tmp/verl-pkgs}"
PIP="${PIP:-$(dirname "$0")/../.venv/bin/pip}"
if [ -d "$TARGET/verl-0.7.1.dist-info" ] && [ -d "$TARGET/tensordict-0.10.0.dist-info" ]; then
    exit 0  # already there
fi
"$PIP" install --no-deps --target "$TARGET" verl==0.7.1 tensordict==0.10.0 pyvers==0.2.3 omegaconf==2.4.0 \
    antlr4-python3-runtime==4.9.3 hydra-core==1.3.8 codetiming==1.4.0 torchdata==0.11.0
