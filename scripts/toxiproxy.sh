#!/usr/bin/env bash
# Builds toxiproxy's server from the Go module proxy once (into $COMET_CACHE) and prints its path;
# exits 1 (saying why) when it cannot: then `make chaos` cuts connections with its own TCP proxy.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION="${COMET_TOXIPROXY_VERSION:-v2.12.0}"
DIR="$COMET_CACHE/toxiproxy-$VERSION"
if [ ! -x "$DIR/server" ]; then
  command -v go >/dev/null || { say "Go is not installed: no toxiproxy (network faults limited to resets)"; exit 1; }
  say "building toxiproxy $VERSION from the Go module proxy into $DIR"
  mkdir -p "$DIR"
  GOBIN="$DIR" GOFLAGS=-mod=mod go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" >&2 \
    || { say "could not build toxiproxy (network faults limited to resets)"; exit 1; }
fi
echo "$DIR/server"
