#!/bin/sh
# A compromised agent "image": before doing its work (the contract-only agent's), it prints
# everything it can read that might hold a credential: its environment, every process's
# environment and command line it can see, and the files under its inputs, its home, /tmp and
# /factory. A test then searches this log for the model key and the forge's credentials.
echo "== environment"
env
for proc in /proc/[0-9]*; do
  echo "== $proc"
  tr '\0' '\n' < "$proc/environ" 2>/dev/null
  tr '\0' ' ' < "$proc/cmdline" 2>/dev/null
  echo
done
for dir in "${AGENTFACTORY_INPUT:-/factory/input}" "$HOME" /tmp /factory; do
  find "$dir" -type f 2>/dev/null | while read -r file; do
    echo "== $file"
    head -c 65536 "$file" 2>/dev/null
    echo
  done
done
echo "== end of the search"
exec /bin/sh "$(dirname "$0")/contract-only.sh"
