# Shared by scripts/serve and scripts/test: a virtualenv with cc2api, and the pinned CLI.
# shellcheck shell=bash

CLAUDE_CLI_VERSION=2.1.197
# The API docs pages' scripts (served by cc2api from .cli/node_modules, never a CDN).
DOCS_PACKAGES=(swagger-ui-dist@5.35.0 redoc@2.5.4)
LOCAL_CLAUDE=.cli/node_modules/.bin/claude

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
    if [ "$("$LOCAL_CLAUDE" --version 2>/dev/null)" = "$CLAUDE_CLI_VERSION (Claude Code)" ] &&
        [ -f .cli/node_modules/redoc/bundles/redoc.standalone.js ] &&
        [ -f .cli/node_modules/swagger-ui-dist/swagger-ui-bundle.js ]; then
        return
    fi
    if ! command -v npm >/dev/null; then
        echo "npm is needed to install the Claude Code CLI $CLAUDE_CLI_VERSION" >&2
        exit 1
    fi
    echo "installing @anthropic-ai/claude-code@$CLAUDE_CLI_VERSION and the docs assets into .cli/" >&2
    mkdir -p .cli
    npm install --prefix .cli --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CLI_VERSION" "${DOCS_PACKAGES[@]}" >&2
    "$LOCAL_CLAUDE" --version >/dev/null
}

# The browser the docs-page tests drive (Debian's chromium), when it is missing.
ensure_chromium() {
    command -v chromium >/dev/null && return
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium for the docs-page tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
    else
        echo "the docs-page tests need chromium: sudo apt-get install chromium" >&2
        exit 1
    fi
}
