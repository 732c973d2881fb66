# Shared by the CI scripts: timed, named steps and apt that waits for the dpkg lock.
# Sourced, not run. Every pipeline here must tolerate a reader that stops early: no `cmd | head`
# under pipefail (the writer dies of SIGPIPE and fails the run); capture output first, then cut.

# step NAME CMD...: prints what it does, runs it, prints how long it took; fails with its status.
step() {
  local name="$1" started rc=0 ms
  shift
  started=${EPOCHREALTIME/./}  # microseconds; bash's own clock (no `date` on PATH needed)
  echo "== $name"
  "$@" || rc=$?
  ms=$(( (${EPOCHREALTIME/./} - started) / 1000 ))
  printf '== %s: %s in %d.%d s\n' "$name" "$([ "$rc" = 0 ] && echo done || echo "FAILED ($rc)")" \
    $((ms / 1000)) $((ms % 1000 / 100))
  return "$rc"
}

# first_line CMD...: the first line of a command's output, without cutting the command short.
first_line() {
  local out
  out="$("$@")"
  printf '%s\n' "${out%%$'\n'*}"
}

APT_LOCK_WAIT="${APT_LOCK_WAIT:-300}"

# apt_get ARGS...: apt-get that waits up to APT_LOCK_WAIT seconds for another apt or dpkg to
# finish instead of failing at once. dpkg's frontend lock has a timeout option; the package
# lists' lock (apt-get update) has none, so a lock error is retried until the same deadline.
apt_get() {
  local deadline=$(( EPOCHSECONDS + APT_LOCK_WAIT )) err rc
  err="$(mktemp)"
  while :; do
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@" 2>"$err" || rc=$?
    if [ "$rc" = 0 ] || ! grep -qi 'lock' "$err" || [ "$EPOCHSECONDS" -ge "$deadline" ]; then
      cat "$err" >&2
      rm -f "$err"
      return "$rc"
    fi
    echo "apt is busy (another process holds its lock); retrying in 5 s" >&2
    sleep 5
  done
}
