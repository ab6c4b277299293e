#!/usr/bin/env bash
# The one-shot GPU check, for a session lent a GPU (docs/engines-and-benchmarks.md, "GPU check"):
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# Runs python -m bench.gpu_check (the report docs/engines-and-benchmarks.md quotes; it exits non-zero when a section
# fails) and the tests that need CUDA or the sandbox, and writes gpu_check.md, gpu_check.log and pytest.log into OUT_DIR ($OUT, or
# here). The lent machines have PyTorch but no apt: when bwrap is missing, it is unpacked from
# a Debian package in .debs/ (made here with: mkdir -p .debs && cd .debs && apt-get download
# bubblewrap), so that the sandbox is checked with its namespaces.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
mkdir -p "$out"

if ! command -v bwrap >/dev/null; then
    for deb in .debs/bubblewrap_*.deb; do
        [ -e "$deb" ] || continue
        dpkg -x "$deb" /tmp/bubblewrap-deb && install -m 0755 /tmp/bubblewrap-deb/usr/bin/bwrap /usr/local/bin/bwrap
    done
fi
nvidia-smi -L
command -v bwrap && bwrap --version

timeout 380 python3 -m bench.gpu_check --out "$out/gpu_check.md" >"$out/gpu_check.log" 2>&1
echo "gpu_check exit $?"; tail -n 60 "$out/gpu_check.md"

# pyproject's addopts ask pytest-xdist for two workers: eight where it is installed, else none
workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8" || echo "-o addopts=-ra")
# shellcheck disable=SC2086
timeout 180 python3 -m pytest -q -p no:cacheprovider $workers tests/test_serving.py tests/test_runtime.py \
    tests/test_metrics.py tests/test_inference.py tests/test_sandbox.py tests/test_sandboxed_models.py \
    tests/test_validation.py tests/test_requests.py tests/test_engines.py tests/test_tiling.py >"$out/pytest.log" 2>&1
echo "pytest exit $?"; tail -n 30 "$out/pytest.log"
