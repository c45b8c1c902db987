#!/usr/bin/env bash
# Sends the demo project a GitHub push webhook signed by hand with openssl, as GitHub would:
#   X-Hub-Signature-256: sha256=HMAC-SHA256(webhook secret, raw body)
# Needs `make run` (or `make up`) first. Usage: scripts/demo-webhook.sh [DELIVERY_ID]
# Without DELIVERY_ID the delivery is named after the demo repository's commit, as a Git host's
# redelivery of the same push would be: the first run starts a run, the second is answered
# `"duplicate": true` and starts nothing. Pass a new id to send a new delivery.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck disable=SC1091
source "$COMET_HOME/demo-credentials" || die "no demo credentials: start Comet with 'make run' first"
sha="$(git -C "$DEMO_REPO" rev-parse HEAD)"
delivery="${1:-demo-push-${sha:0:12}}"
body=$(printf '{"ref":"refs/heads/main","before":"%s","after":"%s","created":false,"deleted":false,"forced":false,"repository":{"full_name":"%s","clone_url":"file://%s"},"sender":{"login":"demo"},"commits":[{"id":"%s","added":[],"removed":[],"modified":[".comet.yml"]}],"head_commit":{"id":"%s"}}' \
  "0000000000000000000000000000000000000000" "$sha" "$DEMO_PROVIDER_REPO" "$DEMO_REPO" "$sha" "$sha")
signature="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$DEMO_WEBHOOK_SECRET" | sed 's/^.*= //')"
curl -sS -i -X POST "http://$COMET_API_HOST:$COMET_API_PORT/api/v1/webhooks/github" \
  -H "Content-Type: application/json" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: $delivery" \
  -H "X-Hub-Signature-256: $signature" --data-binary "$body"
echo
