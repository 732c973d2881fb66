#!/bin/sh
# dms-agent liveness probe for the mailserver (fail-open). Usage: probe [FILE] [MAX_AGE_S]
# Exit 1 only if FILE's first line is "unhealthy <unix time>" written at most MAX_AGE_S ago.
file=${1:-/var/run/dms-agent/verdict}
max_age=${2:-60}
case $max_age in ''|*[!0-9]*) max_age=60 ;; esac
[ -r "$file" ] || exit 0
IFS=' ' read -r verdict stamp rest < "$file" || [ -n "$stamp" ] || exit 0
[ "$verdict" = unhealthy ] || exit 0
# unparsable (empty, signed, not digits, leading zero, absurdly large): stale, so pass
case $stamp in ''|*[!0-9]*|0*|?????????????*) exit 0 ;; esac
now=$(date +%s 2>/dev/null) || exit 0
case $now in ''|*[!0-9]*|0*|?????????????*) exit 0 ;; esac
age=$( (echo $((now - stamp))) 2>/dev/null ) || exit 0
case $age in ''|*[!0-9-]*) exit 0 ;; esac
# stale (agent gone or stuck) or from the future (clock trouble): pass
if [ "$age" -lt -5 ] || [ "$age" -gt "$max_age" ]; then exit 0; fi
echo "dms-agent verdict: unhealthy, written ${age}s ago"
sed -e 1d -e '/^#/d' "$file" 2>/dev/null | head -n 10
exit 1
