# Shared by scripts/serve and scripts/test: a virtualenv with cc2api, the pinned CLI,
# and the docs pages' scripts.
# shellcheck shell=bash

CLAUDE_CLI_VERSION=2.1.197
LOCAL_CLAUDE=.cli/node_modules/.bin/claude

# npm_install FOLDER [--ignore-scripts] PACKAGE...
npm_install() {
    local folder=$1
    shift
    if ! command -v npm >/dev/null; then
        echo "npm is needed to install $*" >&2
        exit 1
    fi
    echo "installing $* into $folder/" >&2
    mkdir -p "$folder"
    npm install --prefix "$folder" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "$@" >&2
}

ensure_venv() {
    local extras=$1
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "cc2api needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
}

ensure_local_cli() {
    if [ "$("$LOCAL_CLAUDE" --version 2>/dev/null)" != "$CLAUDE_CLI_VERSION (Claude Code)" ]; then
        # Its install script puts the native binary in place: it must run.
        npm_install .cli "@anthropic-ai/claude-code@$CLAUDE_CLI_VERSION"
        "$LOCAL_CLAUDE" --version >/dev/null
    fi
}

# The API docs pages' scripts for an editable install, which serves them from a clone's
# .web/node_modules (a wheel ships its own). The pinned tarballs (cc2api/docs_assets.py)
# are kept, verified, in .web/tarballs: npm is needed only when they are missing or stale.
ensure_docs_assets() {
    .venv/bin/python -m cc2api.docs_assets .web/node_modules --tarballs .web/tarballs
}

# ensure_commands WHAT-FOR [APT-OPTION...] -- COMMAND:PACKAGE...: install (apt, as root) the
# Debian package of each command that is missing, all in one go.
ensure_commands() {
    local why=$1 options=() pair missing=()
    shift
    while [ "$1" != -- ]; do
        options+=("$1")
        shift
    done
    shift
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} for $why" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${options[@]+"${options[@]}"} \
            "${missing[@]}" >&2
    else
        echo "$why need ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

# The browser the docs-page and console tests drive (Debian's chromium, and its driver).
ensure_chromium() {
    ensure_commands "the docs-page and console tests" -- chromium:chromium \
        chromedriver:chromium-driver
}

# What the command-line client's tests drive a real terminal with.
ensure_tmux() {
    ensure_commands "the command-line client's tests" -- tmux:tmux
}

# What tests/test_systemd_host.py builds and boots its Debian 12 host with.
ensure_nspawn() {
    # Without recommends: libnss-mymachines would add itself to this machine's nsswitch.conf.
    ensure_commands "the systemd host tests" --no-install-recommends -- \
        debootstrap:debootstrap systemd-nspawn:systemd-container
}

# What the store's tests use: sqlite3 for the online backup README gives, chattr for a
# database that refuses writes.
ensure_store_tools() {
    ensure_commands "the store's tests" -- sqlite3:sqlite3 chattr:e2fsprogs
}

# What tests/test_metrics.py scrapes /metrics with: a real Prometheus server.
ensure_prometheus() {
    ensure_commands "the metrics tests" --no-install-recommends -- prometheus:prometheus
}
