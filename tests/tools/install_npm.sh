#!/bin/sh
# Installs the npm build tools the process tests drive (turbo, nx), pinned by
# tests/fixtures/npm/package-lock.json, into DEST (default .venv/node): `DEST/node_modules/.bin`.
set -eu
here=$(cd "$(dirname "$0")/../fixtures/npm" && pwd)
dest=${1:-.venv/node}
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --loglevel=error
