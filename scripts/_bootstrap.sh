# Sourced by the scripts in this folder: finds a Python >= 3.12, makes .venv, installs the project.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSE_CAPTURE_VENV:-$ROOT/.venv}"

find_python() {
  local candidates=("${SSE_CAPTURE_PYTHON:-}" python3.13 python3.12 python3)
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for v in "$pyenv_root"/versions/3.1[3-9]*/bin/python3 "$pyenv_root"/versions/3.12*/bin/python3 \
           /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    candidates+=("$v")
  done
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    local exe
    exe="$(command -v "$c" 2>/dev/null)" || continue
    if "$exe" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$exe"; return 0
    fi
  done
  echo "sse-capture needs Python >= 3.12 (mitmproxy 12 does); none found. Set SSE_CAPTURE_PYTHON=/path/to/python3.12" >&2
  return 1
}

bootstrap() {
  local extras="${1:-}"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    local py; py="$(find_python)"
    echo "sse-capture: creating $VENV with $py" >&2
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  fi
  local stamp="$VENV/.installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/setup.py" -nt "$stamp" ] \
     || [ "$ROOT/sse_capture_addon/_speedups.c" -nt "$stamp" ]; then
    echo "sse-capture: installing the project into $VENV" >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}" >&2
    touch "$stamp"
    if ! "$VENV/bin/python" -c 'import sse_capture_addon._speedups' 2>/dev/null; then
      echo "sse-capture: the C accelerator (sse_capture_addon/_speedups.c) was not built, so recording token" \
           "streams costs more CPU; the results are the same. Install a C compiler (apt-get install gcc) and" \
           "run this again after: touch sse_capture_addon/_speedups.c" >&2
    fi
  fi
}
