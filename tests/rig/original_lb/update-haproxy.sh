#!/bin/bash
# The original poor-man's-LB receiver's hook, rebuilt for the tests from the published
# description of its behaviour (not its text): five positional arguments (name, frontend port,
# backend port, destination address, action) and nothing else (the sender's send-proxy never
# reaches it), no value checked; one include file per frontend port; `haproxy -c` over the
# global part plus every include; the result copied and HAProxy reloaded only when it changed.
# Paths are relative to the working directory webhook runs it in (command-working-directory).
# Test stand-ins: $RELOAD for `systemctl reload haproxy`, $BIND for `*`, $HAPROXY for `haproxy`.

if [[ $# -ne 5 ]]; then
	echo "wrong number of arguments: $#"
	exit 2
fi
name=$1 frontend=$2 backend=$3 address=$4 action=$5

case $action in
add)
	cat >"parts/$frontend.inc" <<CFG
# registered by $name for port $frontend
frontend port_${frontend}
  bind ${BIND:-*}:$frontend
  mode tcp
  default_backend to_${frontend}

backend to_${frontend}
  mode tcp
  balance roundrobin
  stick-table type ip size 200k expire 30m
  stick on src
  server s1 $address:$backend
CFG
	;;
delete)
	rm "parts/$frontend.inc"
	;;
*)
	echo "unknown action: $action"
	exit 2
	;;
esac

cat parts/global parts/*.inc >candidate.cfg
if ! "${HAPROXY:-haproxy}" -f candidate.cfg -c; then
	echo "candidate config refused, nothing changed"
	exit 2
fi
if ! cmp -s candidate.cfg haproxy.cfg; then
	cp candidate.cfg haproxy.cfg
	echo "config changed, reloading"
	$RELOAD
fi
