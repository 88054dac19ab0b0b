# Sourced by ops/bootstrap.sh and ops/lock: find_python prints a Python 3.13 interpreter that can make
# venvs (MWAP_PYTHON first, then PATH, pyenv's versions folder, /usr/local/bin, /usr/bin).

find_python() {
  local candidate
  for candidate in "${MWAP_PYTHON:-}" "$(command -v python3.13 2>/dev/null)" \
      "$HOME"/.pyenv/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 \
      /usr/local/bin/python3.13 /usr/bin/python3.13; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

no_python() {
  echo "ops: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13' or 'apt-get install python3.13 python3.13-venv'), or point MWAP_PYTHON at it." >&2
  exit 1
}
