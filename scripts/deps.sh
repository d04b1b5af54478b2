#!/bin/sh
# Install the Debian packages lua-dws needs, only those that are missing.
# Everything comes from apt: no LuaRocks server, no downloads at build or test time.
set -eu

PKGS="build-essential pkg-config openssl lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev
libcurl4-openssl-dev libssl-dev libcjson-dev lua-busted lua-cjson nginx-light
libnginx-mod-http-lua luarocks lua-check cppcheck curl
lua-argparse lua-sql-sqlite3 lua-socket
lua-ldoc lua-markdown
chromium chromium-driver
libhiredis-dev redis-server lua-nginx-redis prometheus
python3
softhsm2 libengine-pkcs11-openssl opensc
${DWS_EXTRA_PKGS:-}"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# nginx-light would otherwise start a system nginx on port 80; the sandbox runs its own.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
