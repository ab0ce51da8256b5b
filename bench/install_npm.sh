#!/bin/sh
# Installs the npm servers `make bench` compares with (ducktors' turborepo-remote-cache),
# pinned by bench/npm/package.json (and its lock, when present), into DEST (default
# .venv/bench-node): `DEST/node_modules/.bin/turborepo-remote-cache`.
set -eu
here=$(cd "$(dirname "$0")/npm" && pwd)
dest=${1:-.venv/bench-node}
mkdir -p "$dest"
cp "$here/package.json" "$dest/"
if [ -f "$here/package-lock.json" ]; then
  cp "$here/package-lock.json" "$dest/"
  cd "$dest" && npm ci --no-audit --no-fund --loglevel=error
else
  cd "$dest" && npm install --no-audit --no-fund --loglevel=error
fi
