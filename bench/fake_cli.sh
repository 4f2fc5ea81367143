#!/bin/sh
# A fast stand-in for the Claude Code CLI, for the benchmarks: shell builtins and cat
# only, so that what is measured is the gateway, not the fake.
#
# It speaks just enough of `-p --input-format stream-json --output-format stream-json`
# (other arguments are ignored): it reads the user message from the first stdin line,
# acts on the prompt's words, prints an init line first and a result line last, and
# then waits for stdin to close, as the real CLI does. bench/fake.py holds the same
# line formats; the benchmarks check byte counts against them.
#
#   stream FILE                cat FILE (JSON lines) between init and result
#   lines COUNT PAD            COUNT assistant lines with PAD bytes of padding, one write each
#   gate FIFO COUNT PAD        open FIFO, print init, wait for EOF on it, then as `lines`
#   escape                     start a setsid grandchild, print both pids, sleep until killed
#   anything else              init, then result at once
set -u

if [ "${1-}" = "--version" ]; then
    echo "9.9.9 (Fake Claude Code, bench)"
    exit 0
fi

IFS= read -r message || exit 1
# A fresh session id with no fork: the kernel makes one on every read of this file.
read -r session </proc/sys/kernel/random/uuid
# The prompt is the "content" string; bench prompts hold no quotes or backslashes.
prompt=${message#*\"content\":}
prompt=${prompt# }
prompt=${prompt#\"}
prompt=${prompt%%\"*}

init() {
    printf '{"type":"system","subtype":"init","session_id":"%s","model":"fake"}\n' "$session"
}

result() {
    printf '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"%s"}\n' "$session"
}

lines() {
    i=0
    while [ "$i" -lt "$1" ]; do
        printf '{"type":"assistant","n":%d,"pad":"%*s"}\n' "$i" "$2" ""
        i=$((i + 1))
    done
}

set -f
# shellcheck disable=SC2086 # split the prompt into words on purpose (globbing is off)
set -- $prompt
command=${1-}
case "$command" in
stream)
    init
    cat "$2"
    result
    ;;
lines)
    init
    lines "$2" "$3"
    result
    ;;
gate)
    # Opened before init: the benchmark holds the FIFO open for writing until every
    # stream has its init, then closes it, and read sees EOF.
    exec 3<"$2"
    init
    read -r _ <&3 || true
    exec 3<&-
    lines "$3" "$4"
    result
    ;;
escape)
    init
    setsid sleep 600 </dev/null >/dev/null 2>&1 &
    printf '{"type":"assistant","cli_pid":%d,"child_pid":%d}\n' "$$" "$!"
    sleep 600
    exit 0
    ;;
*)
    init
    result
    ;;
esac
# Like the real CLI in stream-json mode: exit only once input has ended.
while IFS= read -r _; do :; done
