# Sourced by ops/run and ops/test: a Python 3.13 venv with the project installed, and redis-server.
# Idempotent and quick when nothing changed.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

source "$root/ops/python.sh"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
  python="$(find_python)" || no_python
  echo "ops: creating $venv with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi

# Install from the lock (every package pinned and hash-checked, the build backend too), then the project
# and its development tooling (ops/, the mwap-tasks-dev distribution: the local stack, the fake
# providers, `mwap demo` and `mwap bench`), editable, built with the locked setuptools and without
# resolving anything more. Again only when the lock or the projects' metadata changed.
lock="$root/requirements/dev.lock"
[ -f "$lock" ] || { echo "ops: $lock is missing: run ops/lock to make it." >&2; exit 1; }
stamp="$venv/.mwap-install-stamp"
want="$(cat "$lock" "$root/pyproject.toml" "$root/ops/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "ops: installing mwap-tasks and its locked dependencies into $venv" >&2
  # Some machines' pip configuration names local indexes that do not exist; their warnings are noise.
  pip_quiet() { "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }
  pip_quiet install --upgrade pip || true
  pip_quiet install --require-hashes -r "$lock"
  pip_quiet install --no-deps --no-build-isolation -e "$root" -e "$root/ops"
  echo "$want" > "$stamp"
fi

# Debian's package lists, fetched at most once per bootstrap, by the first block below that installs.
apt_update_once() {
  if [ -z "${apt_updated:-}" ]; then apt-get update -qq >&2 && apt_updated=1; fi
}

if [ -z "${MWAP_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ops: installing Debian's redis-server" >&2
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "ops: redis-server is missing. Install it (apt-get install redis-server) or set MWAP_REDIS_URL." >&2
    exit 1
  fi
fi

# promtool (Debian's prometheus package) checks ops/prometheus-alerts.yml and kubectl (Debian's
# kubernetes-client: `kubectl kustomize`) renders deploy/k8s in the tests (tests/deploy).
# Only ops/test needs them; ops/run does not ask for them.
if [ -n "${MWAP_NEED_PROMTOOL:-}" ] && { ! command -v promtool >/dev/null 2>&1 || ! command -v kubectl >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    packages=""
    command -v promtool >/dev/null 2>&1 || packages="$packages prometheus"
    command -v kubectl >/dev/null 2>&1 || packages="$packages kubernetes-client"
    echo "ops: installing Debian packages:$packages (for promtool and kubectl)" >&2
    apt_update_once
    # Only its promtool is used: a policy-rc.d answering 101 keeps the package's server from starting.
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1; fi
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >&2
    if [ -n "$own_policy" ]; then rm -f "$policy"; fi
  else
    echo "ops: promtool or kubectl is missing. Install them (apt-get install prometheus kubernetes-client)." >&2
    exit 1
  fi
fi

# The console's browser tests (tests/console) drive Debian's chromium through its chromedriver, and check
# each page with axe-core (Deque's accessibility engine, MPL-2.0), injected into the page. Only ops/test
# needs them (MWAP_NEED_BROWSER); tests/console/browser.py reads the same paths and pin.
if [ -n "${MWAP_NEED_BROWSER:-}" ]; then
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "ops: installing Debian packages: chromium chromium-driver (for the browser tests)" >&2
      apt_update_once
      # Without its recommends (udev, upower, CUPS, a notification daemon: 131 packages, not 26) that a
      # headless browser never uses; fontconfig's own dependency brings a font.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
    else
      echo "ops: /usr/bin/chromium or /usr/bin/chromedriver is missing. Install them (apt-get install chromium chromium-driver)." >&2
      exit 1
    fi
  fi

  # axe-core at the version ops/axe-core.version pins, fetched once with npm into .data/vendor/ and
  # used only if the tarball's digest is the pinned one (npm's dist.integrity: sha512, base64).
  axe_version="$(awk '$1 == "version" { print $2 }' "$root/ops/axe-core.version")"
  axe_integrity="$(awk '$1 == "integrity" { print $2 }' "$root/ops/axe-core.version")"
  if [ -z "$axe_version" ] || [ -z "$axe_integrity" ]; then
    echo "ops: ops/axe-core.version must name a version and an integrity." >&2
    exit 1
  fi
  axe_dir="$root/.data/vendor/axe-core-$axe_version"
  if [ ! -f "$axe_dir/axe.min.js" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "ops: npm is missing: it fetches axe-core $axe_version for the browser tests. Install Node.js and npm (apt-get install npm)." >&2
      exit 1
    fi
    echo "ops: fetching axe-core $axe_version into $axe_dir" >&2
    mkdir -p "$root/.data/vendor"
    axe_tmp="$(mktemp -d "$root/.data/vendor/.axe-core-$axe_version.XXXXXX")"
    chmod 755 "$axe_tmp"
    if ! (cd "$axe_tmp" && npm pack --silent --ignore-scripts "axe-core@$axe_version" >/dev/null); then
      rm -rf "$axe_tmp"
      echo "ops: npm pack axe-core@$axe_version failed (is the npm registry reachable?)" >&2
      exit 1
    fi
    axe_got="sha512-$("$venv/bin/python" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$axe_tmp/axe-core-$axe_version.tgz")"
    if [ "$axe_got" != "$axe_integrity" ]; then
      rm -rf "$axe_tmp"
      echo "ops: axe-core-$axe_version.tgz from npm has integrity $axe_got, not $axe_integrity as ops/axe-core.version pins: not used." >&2
      exit 1
    fi
    tar -xzf "$axe_tmp/axe-core-$axe_version.tgz" -C "$axe_tmp" --strip-components=1 package/axe.min.js package/LICENSE
    rm -rf "$axe_dir"
    mv "$axe_tmp" "$axe_dir"
  fi
fi

export PATH="$venv/bin:$PATH"
cd "$root"
