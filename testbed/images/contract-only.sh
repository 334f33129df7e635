#!/bin/sh
# A foreign agent "image" that is nothing but a shell script honouring the agent pod contract:
# it reads the handoff contract from its input directory, works in the workspace, and writes
# its answer as JSON to the output file; exit 0 once a result is written. It answers the shop
# example's fix-cart task in every role (no model behind it), and claims a diff it did not
# make, which the factory must ignore.
set -eu
role="${AGENTFACTORY_ROLE:?}"
input="${AGENTFACTORY_INPUT:-/factory/input}"
workspace="${AGENTFACTORY_WORKSPACE:-/workspace}"
output="${AGENTFACTORY_OUTPUT:-/factory/output/result.json}"

goal=$(sed -n 's/.*"goal":"\([^"]*\)".*/\1/p' "$input/contract.json")
echo "contract-only agent: $role working on: $goal"
case "$role" in
  planner)
    answer='"plan": {"summary": "Multiply each price by its quantity.", "steps": ["Change cart_total"]}' ;;
  plan-reviewer|code-reviewer)
    answer='"verdict": {"verdict": "APPROVE", "summary": "Looks right.", "findings": []}' ;;
  implementer)
    sed -i 's/sum(price for price, quantity in items)/sum(price * quantity for price, quantity in items)/' \
      "$workspace/shop/cart.py"
    answer='"implementation": {"summary": "cart_total multiplies by quantity.", "rollback": "revert shop/cart.py"}, "diff": "a diff the image only claims"' ;;
  *)
    echo "unknown role $role" >&2
    exit 2 ;;
esac
printf '{"role": "%s", "status": "completed", "stoppedBy": "completed", "turns": 1, %s}\n' \
  "$role" "$answer" > "$output"
