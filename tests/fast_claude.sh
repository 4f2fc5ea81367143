#!/bin/sh
# A stand-in for the Claude Code CLI that starts in a millisecond, for tests that run
# thousands of runs or fuzz the API. It answers any prompt at once, except the prompt
# "hang" exactly, which prints its init line and then sleeps until it is killed.
case "$*" in
*--version*) echo "9.9.9 (Fast fake Claude Code)"; exit 0 ;;
"auth status"*) echo '{"loggedIn":true,"authMethod":"api_key"}'; exit 0 ;;
esac
IFS= read -r line
session="00000000-0000-4000-8000-$(printf '%012d' $$)"
echo "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"$session\"}"
case "$line" in
*'"content": "hang"'*) exec sleep 600 ;;
esac
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"ok"}]}}'
echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\",\"session_id\":\"$session\"}"
cat >/dev/null
