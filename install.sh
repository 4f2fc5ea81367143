#!/usr/bin/env bash
# Install or update cc2api as a systemd service, in one go:
#
#   curl -fsSL <raw url>/install.sh | bash        # or: ./install.sh from a clone
#
# It installs what is missing (Python >= 3.11 with venv; Node.js and npm for the
# Claude Code CLI; the CLI itself), puts cc2api in its own virtualenv under the
# prefix, writes .env (mode 600) once, and runs the service as a non-root user, with
# its store in /var/lib/NAME. Run it again to update in place; .env and the store are
# kept. See --help.
set -euo pipefail

CLAUDE_CLI_VERSION=2.1.197
MARKER=.cc2api-install  # in the prefix: what install.sh may update or remove
# Where the sources come from when this script runs outside a clone (curl | bash).
REPO_URL=${CC2API_REPO_URL:-https://github.com/cc2api/cc2api.git}
DEFAULT_SERVICE=cc2api

usage() {
    cat <<'EOF'
Usage: install.sh [options]

  --user NAME          run the service as NAME (default: you; as root, a new
                       system user "cc2api")
  --prefix DIR         install into DIR (default: /opt/cc2api as root,
                       ~/.local/share/cc2api otherwise)
  --work-dir DIR       a folder runs may write in (repeatable; the service's home
                       always may, the prefix never)
  --host HOST          address to listen on, for a new .env (default 127.0.0.1)
  --port PORT          port to listen on, for a new .env (default 9876)
  --name NAME          the systemd unit's name (default cc2api; a second install on
                       the machine, with its own --prefix and --port, gets
                       cc2api-USER unless named)
  --claude-path PATH   use this claude binary instead of installing the CLI
  --no-service         install the files only: no systemd unit is installed or started
  --install-deps       install the system packages even when they seem present
  --pkg-manager NAME   apt, dnf or yum (default: detected)
  --dry-run            print every step and change nothing
  --uninstall          stop and remove the service and the files, except .env, the
                       install's record (.cc2api-install) and the store (runs and
                       their events) in /var/lib/NAME; the service's user and its
                       home (sessions) are kept
  --purge              with --uninstall, remove .env, the record and the store too
                       (when the store's folder is the user's home, as for the user
                       cc2api, only the store's files go)
  -h, --help           this text

Run it again with the same --prefix to update: the unit's name, user and work
folders are those of the install, unless given again; .env and the store are kept.

The service keeps its store in /var/lib/NAME (NAME: the unit's name), which systemd
makes, mode 0700, for the service's user (StateDirectory=); the unit sets DATA_DIR
there, and a DATA_DIR in .env wins. Without the service (--no-service), the store is
in PREFIX/.data when the server starts in PREFIX.

Credentials for a new .env come from CC2API_AUTH_USER and CC2API_AUTH_PASSWORD,
else are asked on the terminal when there is one, else a strong password is
generated and printed once.
EOF
}

# Everything runs from main, so a download cut short runs nothing (curl | bash).
main() {
# The password must not reach npm's or pip's child processes: keep it, unexport it.
GIVEN_PASSWORD=${CC2API_AUTH_PASSWORD:-}
unset CC2API_AUTH_PASSWORD

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

RUN_USER=""
PREFIX=""
HOST=127.0.0.1
PORT=9876
SERVICE=""
CLAUDE_PATH_GIVEN=""
NO_SERVICE=0
INSTALL_DEPS=0
PKG=""
DRY_RUN=0
UNINSTALL=0
PURGE=0
WORK_DIRS=()

while [ $# -gt 0 ]; do
    case $1 in
    --user) RUN_USER=${2:?--user needs a name}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
    --work-dir) WORK_DIRS+=("${2:?--work-dir needs a folder}"); shift 2 ;;
    --host) HOST=${2:?--host needs an address}; shift 2 ;;
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --name) SERVICE=${2:?--name needs a unit name}; shift 2 ;;
    --claude-path) CLAUDE_PATH_GIVEN=${2:?--claude-path needs a path}; shift 2 ;;
    --no-service) NO_SERVICE=1; shift ;;
    --install-deps) INSTALL_DEPS=1; shift ;;
    --pkg-manager) PKG=${2:?--pkg-manager needs apt, dnf or yum}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
SUDO=()
if [ $IS_ROOT -eq 0 ] && command -v sudo >/dev/null; then
    SUDO=(sudo)
fi

# Every change goes through run, so that --dry-run shows it instead.
run() {
    if [ $DRY_RUN -eq 1 ]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# ${SUDO[@]+...}: an empty array under set -u is an error in bash before 4.4.
as_root() { run ${SUDO[@]+"${SUDO[@]}"} "$@"; }

if [ -z "$PREFIX" ]; then
    if [ $IS_ROOT -eq 1 ]; then PREFIX=/opt/cc2api; else PREFIX=$HOME/.local/share/cc2api; fi
fi
# Absolute, as systemd wants it, and comparable with another unit's.
PREFIX=$(realpath -m -- "$PREFIX")
# Never take over, or delete from, a folder that is not a cc2api install.
if [ -d "$PREFIX" ] && [ ! -e "$PREFIX/$MARKER" ] &&
    find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .env | grep -q .; then
    die "$PREFIX exists and is not a cc2api install (no $MARKER); choose another --prefix"
fi
# The marker keeps the unit's name, user and work folders, so that a rerun (an
# update) and --uninstall need only the prefix: options given again win.
RECORDED_SERVICE=""
RECORDED_USER=""
RECORDED_STATE_DIR=""
RECORDED_WORK_DIRS=()
if [ -f "$PREFIX/$MARKER" ]; then
    while IFS= read -r line; do
        case $line in
        service=*) RECORDED_SERVICE=${line#service=} ;;
        user=*) RECORDED_USER=${line#user=} ;;
        state_dir=*) RECORDED_STATE_DIR=${line#state_dir=} ;;
        work_dir=*) RECORDED_WORK_DIRS+=("${line#work_dir=}") ;;
        esac
    done <"$PREFIX/$MARKER"
fi
NAME_GIVEN=$SERVICE
if [ -z "$SERVICE" ]; then
    SERVICE=${RECORDED_SERVICE:-$DEFAULT_SERVICE}
elif [ -n "$RECORDED_SERVICE" ] && [ "$SERVICE" != "$RECORDED_SERVICE" ]; then
    die "$PREFIX is installed as the unit $RECORDED_SERVICE; leave out --name, or uninstall it first"
fi
# The name is also the store's folder, /var/lib/NAME: no leading dot (so never . or
# ..), and no colon, which StateDirectory= (systemd 250 and later) reads as a link.
case $SERVICE in
*[!A-Za-z0-9_.-]* | "" | -* | .*) die "--name: use letters, digits and _ . - only, not first . or -" ;;
esac
if [ -z "$RUN_USER" ]; then
    if [ -n "$RECORDED_USER" ]; then RUN_USER=$RECORDED_USER
    elif [ $IS_ROOT -eq 1 ]; then RUN_USER=cc2api
    else RUN_USER=$(id -un)
    fi
fi
if [ "$RUN_USER" = root ]; then
    warn "the service will run as root: the CLI then refuses full access (see PERMISSIONS.md)"
fi
if [ ${#WORK_DIRS[@]} -eq 0 ]; then
    WORK_DIRS=(${RECORDED_WORK_DIRS[@]+"${RECORDED_WORK_DIRS[@]}"})
fi
UNIT_PATH=/etc/systemd/system/$SERVICE.service
# A second install on the machine (another prefix) that names no unit gets one named
# for its user, so that --user and --prefix are all it needs. An install's own unit,
# recorded in its marker or named, is never renamed.
if [ -z "$NAME_GIVEN" ] && [ -z "$RECORDED_SERVICE" ] && [ $NO_SERVICE -eq 0 ] &&
    [ $UNINSTALL -eq 0 ] && [ -f "$UNIT_PATH" ] &&
    [ "$(sed -n 's/^WorkingDirectory=//p' "$UNIT_PATH")" != "$PREFIX" ]; then
    SERVICE=$DEFAULT_SERVICE-$RUN_USER
    UNIT_PATH=/etc/systemd/system/$SERVICE.service
    say "the unit $DEFAULT_SERVICE belongs to another install: this one is $SERVICE"
    case $SERVICE in
    *[!A-Za-z0-9_.-]*) die "--name: the user's name makes no unit name; give --name" ;;
    esac
fi
# The store's folder (StateDirectory= in the unit), named as the unit is.
STATE_DIR=/var/lib/$SERVICE
# Never take over, or remove, the unit of another install.
FOREIGN_UNIT=""
if [ $NO_SERVICE -eq 0 ] && [ -f "$UNIT_PATH" ]; then
    UNIT_PREFIX=$(sed -n 's/^WorkingDirectory=//p' "$UNIT_PATH")
    if [ -z "$UNIT_PREFIX" ]; then
        FOREIGN_UNIT="$UNIT_PATH is not a cc2api install's unit"
    elif [ "$UNIT_PREFIX" != "$PREFIX" ]; then
        FOREIGN_UNIT="$UNIT_PATH belongs to the install in $UNIT_PREFIX"
    fi
    if [ -n "$FOREIGN_UNIT" ] && [ $UNINSTALL -eq 0 ]; then
        die "$FOREIGN_UNIT; give this one another --name"
    fi
fi

# --- uninstall -------------------------------------------------------------

if [ $UNINSTALL -eq 1 ]; then
    if [ -n "$FOREIGN_UNIT" ]; then
        say "leaving the unit alone: $FOREIGN_UNIT"
    elif [ $NO_SERVICE -eq 0 ] && [ -f "$UNIT_PATH" ]; then
        say "stopping and removing the $SERVICE service"
        as_root systemctl disable --now "$SERVICE"
        as_root rm -f "$UNIT_PATH"
        as_root systemctl daemon-reload
    fi
    if [ -d "$PREFIX" ]; then
        if [ $PURGE -eq 1 ]; then
            say "removing $PREFIX"
            run rm -rf -- "$PREFIX"
        else
            # The record stays, so that a later --purge still finds the store; .data is
            # the store of a server started by hand in the prefix (--no-service).
            say "removing $PREFIX except .env, $MARKER and .data"
            run find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .env ! -name "$MARKER" \
                ! -name .data -exec rm -rf -- {} +
        fi
    fi
    # Only the store this install recorded, and never one another install's unit uses.
    if [ -n "$RECORDED_STATE_DIR" ]; then
        if [ $PURGE -eq 0 ]; then
            say "keeping the store in $RECORDED_STATE_DIR (--uninstall --purge removes it)"
        elif [ -n "$FOREIGN_UNIT" ]; then
            say "leaving the store in $RECORDED_STATE_DIR alone: $FOREIGN_UNIT"
        elif [ $NO_SERVICE -eq 1 ]; then
            say "leaving the store in $RECORDED_STATE_DIR alone (--no-service)"
        elif [ "$RECORDED_STATE_DIR" != "$STATE_DIR" ]; then
            warn "leaving $RECORDED_STATE_DIR alone: the unit $SERVICE keeps its store in $STATE_DIR"
        elif [ -d "$STATE_DIR" ] || [ $DRY_RUN -eq 1 ]; then
            STORE_HOME=$(getent passwd "$RUN_USER" | cut -d: -f6 || true)
            if [ -n "$STORE_HOME" ] && [ "$(realpath -m -- "$STORE_HOME")" = "$STATE_DIR" ]; then
                # The user cc2api's home is /var/lib/cc2api: its sessions stay, as --help says.
                say "removing the store's files from $STATE_DIR (the home of $RUN_USER stays)"
                as_root find "$STATE_DIR" -maxdepth 1 -type f \( -name cc2api.db \
                    -o -name 'cc2api.db-*' -o -name cc2api.lock \) -delete
            else
                say "removing the store $STATE_DIR"
                as_root rm -rf -- "$STATE_DIR"
            fi
        fi
    fi
    say "uninstalled"
    exit 0
fi

# --- system packages -------------------------------------------------------

if [ -z "$PKG" ]; then
    if command -v apt-get >/dev/null; then PKG=apt
    elif command -v dnf >/dev/null; then PKG=dnf
    elif command -v yum >/dev/null; then PKG=yum
    fi
fi

install_packages() {
    case $PKG in
    apt)
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
        ;;
    dnf | yum) as_root "$PKG" install -y "$@" ;;
    *) die "cannot install $* here: no apt-get, dnf or yum; install them and run again" ;;
    esac
}

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        # ensurepip too: Debian ships venv without it unless python3-venv is installed.
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
                2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PYTHON=$(find_python || true)
if [ -z "$PYTHON" ] || [ $INSTALL_DEPS -eq 1 ]; then
    say "installing Python 3.11+ with venv ($PKG)"
    case $PKG in
    apt)
        install_packages python3 python3-venv python3-pip
        # Older releases (Ubuntu 22.04) have an older python3 but ship python3.11.
        find_python >/dev/null || install_packages python3.11 python3.11-venv
        ;;
    *) install_packages python3.11 python3.11-pip ;;
    esac
    PYTHON=$(find_python || true)
    if [ -z "$PYTHON" ]; then
        [ $DRY_RUN -eq 1 ] || die "no Python 3.11 or newer with venv after installing it"
        PYTHON=python3.11
    fi
fi

CLI_DIR=$PREFIX/cli
LOCAL_CLAUDE=$CLI_DIR/node_modules/.bin/claude
if [ -n "$CLAUDE_PATH_GIVEN" ]; then
    CLAUDE=$CLAUDE_PATH_GIVEN
else
    CLAUDE=$LOCAL_CLAUDE
fi
if ! command -v npm >/dev/null || [ $INSTALL_DEPS -eq 1 ]; then
    # npm also builds cc2api's wheel: it fetches the API docs pages' scripts (npm pack).
    say "installing Node.js and npm for the Claude Code CLI and the docs pages ($PKG)"
    install_packages nodejs npm
fi

# --- the service's user ----------------------------------------------------

if id "$RUN_USER" >/dev/null 2>&1; then
    RUN_HOME=$(getent passwd "$RUN_USER" | cut -d: -f6)
else
    [ $IS_ROOT -eq 1 ] || [ $DRY_RUN -eq 1 ] || die "user $RUN_USER does not exist"
    say "creating the system user $RUN_USER"
    RUN_HOME=/var/lib/$RUN_USER
    as_root useradd --system --create-home --home-dir "$RUN_HOME" --shell /usr/sbin/nologin "$RUN_USER"
fi
RUN_GROUP=$(id -gn "$RUN_USER" 2>/dev/null || printf '%s' "$RUN_USER")

# --- the sources -----------------------------------------------------------

if [ $DRY_RUN -eq 1 ]; then
    WORK_TMP=/tmp/cc2api-install
else
    WORK_TMP=$(mktemp -d)
    trap 'rm -rf -- "$WORK_TMP"' EXIT
fi
SCRIPT_DIR=""
if [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
    SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fi
if [ -n "${CC2API_SOURCE:-}" ]; then
    SOURCE=$CC2API_SOURCE
elif [ -n "$SCRIPT_DIR" ] && grep -qs '^name = "cc2api"' "$SCRIPT_DIR/pyproject.toml"; then
    SOURCE=$SCRIPT_DIR
else
    command -v git >/dev/null || install_packages git
    SOURCE=$WORK_TMP/cc2api
    say "fetching cc2api from $REPO_URL"
    GIT_TERMINAL_PROMPT=0 run git clone --quiet --depth 1 "$REPO_URL" "$SOURCE" </dev/null
fi

# --- cc2api and the CLI ----------------------------------------------------

if [ -x "$PREFIX/venv/bin/cc2api" ]; then
    say "updating the install in $PREFIX (its .env is kept)"
else
    say "installing cc2api into $PREFIX"
fi
run mkdir -p "$PREFIX"
if [ $DRY_RUN -eq 1 ]; then
    printf '+ write %s\n' "$PREFIX/$MARKER"
else
    {
        printf 'service=%s\nuser=%s\n' "$SERVICE" "$RUN_USER"
        # The store's folder, once a unit uses it: what --uninstall --purge removes.
        if [ $NO_SERVICE -eq 0 ]; then printf 'state_dir=%s\n' "$STATE_DIR"
        elif [ -n "$RECORDED_STATE_DIR" ]; then printf 'state_dir=%s\n' "$RECORDED_STATE_DIR"
        fi
        for dir in ${WORK_DIRS[@]+"${WORK_DIRS[@]}"}; do printf 'work_dir=%s\n' "$dir"; done
    } >"$PREFIX/$MARKER"
fi
[ -d "$PREFIX/venv" ] || run "$PYTHON" -m venv "$PREFIX/venv"
# Built from a copy: a build writes in the folder it builds (build/, *.egg-info), and
# the sources may be read-only, or a user's clone that root should not write in. The
# hidden folders (.git, a developer's .venv) are not needed.
BUILD_DIR=$WORK_TMP/build
run mkdir -p "$BUILD_DIR"
for entry in "$SOURCE"/*; do
    case ${entry##*/} in
    build | *.egg-info | node_modules) ;;
    *) run cp -R "$entry" "$BUILD_DIR/" ;;
    esac
done
run "$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
    "$BUILD_DIR"
run cp "$SOURCE/README.md" "$SOURCE/API.md" "$SOURCE/PERMISSIONS.md" "$PREFIX/"

# Each npm folder is installed whole in one call: `npm install --no-save` prunes
# whatever else it had installed. npm_install FOLDER [--ignore-scripts] PACKAGE...
npm_install() {
    local folder=$1
    shift
    run mkdir -p "$folder"
    run npm install --prefix "$folder" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "$@" </dev/null
}
if [ -z "$CLAUDE_PATH_GIVEN" ]; then
    if [ "$("$LOCAL_CLAUDE" --version 2>/dev/null </dev/null)" = "$CLAUDE_CLI_VERSION (Claude Code)" ]; then
        say "the Claude Code CLI $CLAUDE_CLI_VERSION is in place"
    else
        say "installing the Claude Code CLI $CLAUDE_CLI_VERSION"
        # Its install script puts the native binary in place: it must run.
        npm_install "$CLI_DIR" "@anthropic-ai/claude-code@$CLAUDE_CLI_VERSION"
    fi
fi

# --- .env ------------------------------------------------------------------

ENV_FILE=$PREFIX/.env
if [ -f "$ENV_FILE" ]; then
    say "keeping $ENV_FILE"
    run chmod 600 "$ENV_FILE"
    # Earlier installs wrote this line; the folder it names is gone. Drop exactly that
    # line: grep reads the file itself (its contents never reach argv), and the copy is
    # made mode 600 beside it, then renamed over it.
    STALE_DOCS_LINE="DOCS_ASSETS_DIR=$PREFIX/web/node_modules"
    if grep -qxF -- "$STALE_DOCS_LINE" "$ENV_FILE"; then
        say "removing $STALE_DOCS_LINE from $ENV_FILE"
        if [ $DRY_RUN -eq 0 ]; then
            ENV_COPY=$(mktemp "$ENV_FILE.XXXXXX")
            # grep's exit 1 only says that no line was left.
            if ! { grep -vxF -- "$STALE_DOCS_LINE" "$ENV_FILE" >"$ENV_COPY" || [ $? -eq 1 ]; }; then
                rm -f -- "$ENV_COPY"
                die "could not rewrite $ENV_FILE"
            fi
            mv -f -- "$ENV_COPY" "$ENV_FILE"
        fi
    fi
    if [ $DRY_RUN -eq 0 ] && grep -q '^DOCS_ASSETS_DIR=' "$ENV_FILE"; then
        say "$ENV_FILE sets DOCS_ASSETS_DIR, which overrides the docs pages' scripts of cc2api"
    fi
    if [ $DRY_RUN -eq 0 ] && [ $NO_SERVICE -eq 0 ] && grep -q '^DATA_DIR=' "$ENV_FILE"; then
        say "$ENV_FILE sets DATA_DIR, which overrides the store's folder $STATE_DIR"
    fi
else
    AUTH_USER=${CC2API_AUTH_USER:-admin}
    AUTH_PASSWORD=$GIVEN_PASSWORD
    if [ -z "$AUTH_PASSWORD" ] && [ $DRY_RUN -eq 0 ] && { : </dev/tty; } 2>/dev/null; then
        printf 'Password for %s (empty: generate one): ' "$AUTH_USER" >/dev/tty
        IFS= read -rs AUTH_PASSWORD </dev/tty || AUTH_PASSWORD=""
        printf '\n' >/dev/tty
    fi
    say "writing $ENV_FILE (mode 600)"
    # The password reaches init-env through its environment: never argv, never sed.
    CC2API_AUTH_PASSWORD=$AUTH_PASSWORD run "$PREFIX/venv/bin/cc2api" init-env \
        --path "$ENV_FILE" --user "$AUTH_USER" --claude-path "$CLAUDE" \
        --set "HOST=$HOST" --set "PORT=$PORT"
fi
# The docs pages' scripts ship in cc2api's wheel now; earlier installs kept them here.
if [ -d "$PREFIX/web" ]; then
    say "removing $PREFIX/web (the docs pages' scripts now come with cc2api)"
    run rm -rf -- "$PREFIX/web"
fi
# The install stays root's when root installs: the service user may read and run
# it, not change it, or it could plant code that root runs at the next update. The
# .env is root's alone; systemd reads it for the service (EnvironmentFile=).

# --- the systemd unit ------------------------------------------------------

render_unit() {
    # A leading '-': a work folder that does not exist must not stop the service.
    local dirs="" dir
    for dir in ${WORK_DIRS[@]+"${WORK_DIRS[@]}"}; do dirs="$dirs -$dir"; done
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@USER@|$RUN_USER|g" -e "s|@GROUP@|$RUN_GROUP|g" \
        -e "s|@HOME@|$RUN_HOME|g" -e "s|@WORK_DIRS@|$dirs|g" -e "s|@STATE@|$SERVICE|g" \
        "$SOURCE/systemd/cc2api.service"
}

if [ $NO_SERVICE -eq 1 ]; then
    say "writing $PREFIX/$SERVICE.service (not installed: --no-service)"
    if [ $DRY_RUN -eq 0 ]; then render_unit >"$PREFIX/$SERVICE.service"; fi
    say "done; start it with: cd $PREFIX && ./venv/bin/cc2api serve"
    exit 0
fi

say "installing the systemd unit $UNIT_PATH"
# systemd makes the store's folder at start (StateDirectory=), and hands an existing one
# to the service's user: say so when it is someone else's (an earlier install's user).
if [ -e "$STATE_DIR/cc2api.db" ]; then
    say "keeping the store in $STATE_DIR"
else
    say "the store goes in $STATE_DIR (systemd makes it, mode 0700, for $RUN_USER)"
fi
if [ -d "$STATE_DIR" ] && STATE_OWNER=$(stat -c %U -- "$STATE_DIR") &&
    [ "$STATE_OWNER" != "$RUN_USER" ]; then
    warn "$STATE_DIR belongs to $STATE_OWNER: systemd gives it, and all in it, to $RUN_USER"
fi
if [ $DRY_RUN -eq 1 ]; then
    printf '+ write %s\n' "$UNIT_PATH"
else
    render_unit | ${SUDO[@]+"${SUDO[@]}"} tee "$UNIT_PATH" >/dev/null
fi
as_root systemctl daemon-reload
as_root systemctl enable "$SERVICE"
as_root systemctl restart "$SERVICE"

if [ $DRY_RUN -eq 1 ]; then
    say "dry run: nothing was changed"
    exit 0
fi
# The address is the .env's, which an update keeps, not this run's --host/--port.
URL=$("$PREFIX/venv/bin/python" -c 'import sys
from dotenv import dotenv_values
env = dotenv_values(sys.argv[1])
host = env.get("HOST") or "127.0.0.1"
host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
host = f"[{host}]" if ":" in host else host
port = env.get("PORT") or 9876
print(f"http://{host}:{port}")' "$ENV_FILE")
say "waiting for $URL/health"
for _ in $(seq 1 60); do
    if STATUS=$("$PREFIX/venv/bin/python" -c 'import json, sys, urllib.request
health = json.load(urllib.request.urlopen(sys.argv[1] + "/health", timeout=2))
print(health["status"], health.get("reason", ""))' "$URL" 2>/dev/null); then
        case $STATUS in
        ok*) say "cc2api is up. Try:" ;;
        *) warn "cc2api answers, but says: $STATUS" ;;
        esac
        printf '  curl %s/health\n' "$URL"
        printf '  curl -N -u USER:PASSWORD %s/chat -H "Content-Type: application/json" \\\n' "$URL"
        printf '       -d '\''{"prompt": "Hello", "cwd": "%s"}'\''\n' "$RUN_HOME"
        printf 'Credentials are in %s; logs: journalctl -u %s -f\n' "$ENV_FILE" "$SERVICE"
        if grep -q '^DATA_DIR=' "$ENV_FILE"; then
            printf 'Its store (runs and their events) is in the DATA_DIR that %s sets\n' "$ENV_FILE"
        else
            printf 'Its store (runs and their events) is in %s\n' "$STATE_DIR"
        fi
        exit 0
    fi
    sleep 1
done
die "the service did not answer on /health; see: journalctl -u $SERVICE -e"
}

main "$@"
