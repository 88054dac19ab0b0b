# Sourced by ops/run and ops/test: a Python 3.13 venv with the project installed, and redis-server.
# Idempotent and quick when nothing changed.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

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

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
  python="$(find_python)" || {
    echo "ops: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13' or 'apt-get install python3.13 python3.13-venv'), or point MWAP_PYTHON at it." >&2
    exit 1
  }
  echo "ops: creating $venv with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi

# Reinstall only when the project's metadata changed since the last install.
stamp="$venv/.mwap-install-stamp"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "ops: installing mwap-tasks and its dependencies into $venv" >&2
  # Some machines' pip configuration names local indexes that do not exist; their warnings are noise.
  pip_quiet() { "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" >&2 || true; }
  pip_quiet install --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi

if [ -z "${MWAP_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ops: installing Debian's redis-server" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "ops: redis-server is missing. Install it (apt-get install redis-server) or set MWAP_REDIS_URL." >&2
    exit 1
  fi
fi

export PATH="$venv/bin:$PATH"
cd "$root"
