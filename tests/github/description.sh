#!/usr/bin/env bash
# Fetches GitHub's own description of its REST API (the npm package @octokit/openapi, at the
# pinned version) into a cache directory, for the tests that hold the fake GitHub and the
# adapter's requests to it. A fetched version is reused. The last line on stdout is the file.
set -euo pipefail

version=23.0.2
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
echo "$dir/api.github.com.json"
