# Shared by bin/up and bin/test: create .venv and install Steward into it (once per change
# of pyproject.toml or its lock file). torch is installed first, pinned, because an open range
# lets pip pull a multi-GB CUDA build on Linux; set TORCH_SPEC (e.g. "torch==2.13.0+cu126" with
# PIP_EXTRA_INDEX_URL) for a GPU node. Everything else comes from the lock files bin/lock writes:
# requirements.txt for running Steward, requirements-dev.txt for the tests.
TORCH_PIN="2.13.0"
install_steward() {
    local extra="$1"
    local python="${PYTHON:-python3}"
    local lock=requirements.txt
    [ "$extra" = "[dev]" ] && lock=requirements-dev.txt
    if [ ! -x .venv/bin/python ]; then
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { echo "Steward needs Python 3.11 or 3.12 (set PYTHON=...)" >&2; exit 1; }
        "$python" -m venv .venv
    fi
    local stamp=".venv/.steward-installed${extra}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -c 'import torch' 2>/dev/null \
            || .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==${TORCH_PIN}}"
        .venv/bin/python -m pip install --quiet -r "$lock"
        .venv/bin/python -m pip install --quiet --no-deps -e .
        .venv/bin/python -m pip check
        touch "$stamp"
    fi
}
