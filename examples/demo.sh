#!/bin/sh
# `make demo`: bind a card end to end on this machine. Starts the DWS sandbox and the example
# merchant server (both nginx, loopback only), runs examples/bind_card.lua (plain Lua 5.4 over
# libcurl), then stops both servers, also when something fails.
#
# No configuration: the merchant's keys are made on the first run under .demo/ (gitignored);
# the sandbox makes its own CA, certificate and DWS key pair under .demo/sandbox/.
# DWS_DEMO_DIR puts all of it elsewhere (the specs run the demo in a temporary directory).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
demo="${DWS_DEMO_DIR:-$root/.demo}"
client_id=SANDBOX_DEMO_MERCHANT

export DWS_ROOT="$root"
export DWS_SANDBOX_JIT_CPATH="$root/build/jit/?.so"
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/sandbox/lua/?.lua;$root/examples/?.lua;;"
export LUA_CPATH="$root/build/5.4/?.so;;"

for f in build/5.4/dws/core.so build/5.4/dws/curl.so build/jit/dws/core.so; do
    [ -f "$f" ] || { echo "demo: $f is missing: run make first" >&2; exit 1; }
done

mkdir -p "$demo/keys"
if [ ! -f "$demo/keys/merchant_private.pem" ]; then
    echo "demo: first run: making the merchant's RSA-2048 key pair in $demo/keys/"
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$demo/keys/merchant_private.pem" 2>/dev/null)
    openssl pkey -in "$demo/keys/merchant_private.pem" -pubout -out "$demo/keys/merchant_public.pem" 2>/dev/null
fi

# Three free loopback ports: the sandbox's http and https, and the merchant server (the sandbox
# must know the merchant's notify URL before either starts).
# shellcheck disable=SC2046
set -- $(lua5.4 -e 'local p = require("dws_sandbox.nginx").free_ports(3) print(p[1], p[2], p[3])')
# The token bind_card.lua shows the sandbox's record of the delivery with (deliveries are per client).
admin_token=$(lua5.4 -e 'print(require("dws_sandbox.control").random_token())')
http_port=$1
https_port=$2
merchant_port=$3

# The sandbox's config: our merchant, its public key and notify URL. notify_scale 0.01 turns
# Antom's re-delivery schedule (2 min, 10 min, ...) into seconds. It holds the admin token: private
# (umask 077), and created afresh (noclobber), never written through a link left at its path.
rm -f "$demo/sandbox_config.lua"
(umask 077 && set -C && {
    echo "-- written by examples/demo.sh"
    echo "return {"
    echo "  clients = {"
    echo "    [\"$client_id\"] = {"
    echo "      public_key = [["
    cat "$demo/keys/merchant_public.pem"
    echo "]],"
    echo "      notify_url = \"http://127.0.0.1:$merchant_port/notify\","
    echo "      admin_token = \"$admin_token\","
    echo "    },"
    echo "  },"
    echo "  notify_scale = 0.01,"
    # The notification leaves a second after the answer, so the demo shows ACCEPTED first, then
    # BOUND (with 0, as at DWS, the notification may reach the merchant before the answer does).
    echo "  bound_notify_delay = 1,"
    echo "}"
} > "$demo/sandbox_config.lua")

stop_servers() {
    lua5.4 examples/merchant_server.lua stop --dir "$demo/merchant" >/dev/null 2>&1 || true
    sandbox/bin/dws-sandbox stop --dir "$demo/sandbox" >/dev/null 2>&1 || true
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

echo "demo: starting the DWS sandbox (nginx) on 127.0.0.1:$http_port (http) and :$https_port (https)"
sandbox/bin/dws-sandbox start --dir "$demo/sandbox" --http-port "$http_port" --https-port "$https_port" \
    --config "$demo/sandbox_config.lua" >/dev/null

echo "demo: starting the example merchant server (nginx) on 127.0.0.1:$merchant_port"
# The script and the merchant server share one binding journal (SQLite): the notification the
# server receives moves the script's binding from ACCEPTED to BOUND.
# The sandbox's certificate names localhost and 127.0.0.1; nginx checks DNS names only.
lua5.4 examples/merchant_server.lua start --dir "$demo/merchant" --port "$merchant_port" \
    --gateway "https://127.0.0.1:$https_port" --ca-file "$demo/sandbox/certs/ca.pem" --server-name localhost \
    --client-id "$client_id" --private-key "$demo/keys/merchant_private.pem" \
    --dws-public-key "$demo/sandbox/keys/dws_public.pem" --journal "sqlite:$demo/journal.db" >/dev/null

DWS_GATEWAY="https://127.0.0.1:$https_port" \
DWS_CLIENT_ID="$client_id" \
DWS_PRIVATE_KEY_FILE="$demo/keys/merchant_private.pem" \
DWS_PUBLIC_KEY_FILE="$demo/sandbox/keys/dws_public.pem" \
DWS_CA_FILE="$demo/sandbox/certs/ca.pem" \
DWS_JOURNAL="sqlite:$demo/journal.db" \
MERCHANT_URL="http://127.0.0.1:$merchant_port" \
DWS_SANDBOX_ADMIN="http://127.0.0.1:$http_port" \
DWS_SANDBOX_ADMIN_TOKEN="$admin_token" \
    lua5.4 examples/bind_card.lua

echo "demo: stopping both servers"
