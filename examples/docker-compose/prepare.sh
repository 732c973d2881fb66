#!/bin/sh
# One-time set-up of the docker-compose example; run it here, as root (sudo ./prepare.sh).
# - DMS's data folders;
# - DMS's config folder owned by the agent image's user, uid 10001 and gid 10001 (the
#   Dockerfile's USER), so the agent's file executor can write DMS's files there; DMS runs as
#   root and reads them as they are;
# - the ledger key (secrets/ledger.key): 32 random bytes, hex, readable by the agent's user
#   only (the agent refuses a key others may read). An existing key is kept: a new key
#   invalidates the ledger's password digests and every password is set again once.
# - the status token (secrets/status.token): /status and the status page answer beyond the
#   container's loopback only with it, and compose's published port is beyond it.
# Safe to run again.
set -eu
cd "$(dirname "$0")"
AGENT_UID=10001
AGENT_GID=10001

mkdir -p docker-data/dms/mail-data docker-data/dms/mail-state docker-data/dms/mail-logs
install -d -o "$AGENT_UID" -g "$AGENT_GID" -m 0755 docker-data/dms/config
install -d -o "$AGENT_UID" -g "$AGENT_GID" -m 0700 docker-data/dms/config/.dms-agent

install -d -m 0700 secrets
if [ ! -s secrets/ledger.key ]; then
  (umask 077 && openssl rand -hex 32 > secrets/ledger.key.new)
  mv secrets/ledger.key.new secrets/ledger.key
fi
# compose bind-mounts the file itself with its owner and mode: the agent's user owns it, and
# nobody else may read it (the agent refuses a key others can read, as ssh does)
chown "$AGENT_UID:$AGENT_GID" secrets/ledger.key
chmod 0600 secrets/ledger.key
if [ ! -s secrets/status.token ]; then
  (umask 077 && openssl rand -hex 24 > secrets/status.token.new)
  mv secrets/status.token.new secrets/status.token
fi
chown "$AGENT_UID:$AGENT_GID" secrets/status.token
chmod 0600 secrets/status.token
echo "ready: docker compose up -d --build"
