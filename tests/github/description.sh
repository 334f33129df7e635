#!/usr/bin/env bash
# Fetches GitHub's own description of its REST API (the npm package @octokit/openapi, at the
# pinned version) into a cache directory, for the tests that hold the fake GitHub and the
# adapter's requests to it; and exchanges recorded with the real GitHub (@octokit/fixtures),
# which the tests replay to the adapter; and GitHub's GraphQL schema (@octokit/graphql-schema),
# which the fake holds GraphQL requests to. A fetched version is reused. The last line on
# stdout is the description.
set -euo pipefail

version=23.0.2
fixtures=23.1.2
graphql=15.26.1
root="${AGENTFACTORY_GITHUB_OPENAPI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentfactory/github-openapi}"
dir="$root/$version"
if [[ ! -f "$dir/api.github.com.json" ]]; then
  echo "GitHub API description: fetching @octokit/openapi@$version" >&2
  mkdir -p "$dir.partial"
  (cd "$dir.partial" && npm pack --silent "@octokit/openapi@$version" >/dev/null \
    && tar xzf "octokit-openapi-$version.tgz" --strip-components=2 package/generated/api.github.com.json \
    && rm "octokit-openapi-$version.tgz")
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
recorded="$root/fixtures-$fixtures"
if [[ ! -d "$recorded" ]]; then
  echo "GitHub recordings: fetching @octokit/fixtures@$fixtures" >&2
  mkdir -p "$recorded.partial"
  (cd "$recorded.partial" && npm pack --silent "@octokit/fixtures@$fixtures" >/dev/null \
    && tar xzf "octokit-fixtures-$fixtures.tgz" --strip-components=3 package/scenarios/api.github.com \
    && rm "octokit-fixtures-$fixtures.tgz")
  rm -rf "$recorded" && mv "$recorded.partial" "$recorded"
fi
schema="$root/graphql-$graphql"
if [[ ! -f "$schema/schema.graphql" ]]; then
  echo "GitHub GraphQL schema: fetching @octokit/graphql-schema@$graphql" >&2
  mkdir -p "$schema.partial"
  (cd "$schema.partial" && npm pack --silent "@octokit/graphql-schema@$graphql" >/dev/null \
    && tar xzf "octokit-graphql-schema-$graphql.tgz" --strip-components=1 package/schema.graphql \
    && rm "octokit-graphql-schema-$graphql.tgz")
  rm -rf "$schema" && mv "$schema.partial" "$schema"
fi
echo "$dir/api.github.com.json"
