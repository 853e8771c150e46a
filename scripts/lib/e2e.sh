# Shared harness of the end-to-end scripts (sourced, not run): a scratch
# directory cleaned on exit, free loopback ports, a `regfs mount`, and nginx
# running the shipped scripts/nginx/regfs.conf with workers as www-data.

REGFS=${REGFS:-target/debug/regfs}
[ -x "$REGFS" ] || cargo build --quiet
work=$(mktemp -d /tmp/regfs-e2e.XXXXXX)
chmod 755 "$work"
pids=()
regfs_pid=

e2e_cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    mountpoint -q "$work/mnt" && fusermount3 -uz "$work/mnt" || true
    rm -rf "$work"
}
trap e2e_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fail() {
    echo "$E2E: FAIL: $*" >&2
    [ -f "$work/regfs.log" ] && tail -30 "$work/regfs.log" >&2
    exit 1
}

# serve_dir DIR [--throttle GLOB RATE]: a static HTTP upstream; sets $up_port.
serve_dir() {
    up_port=$(free_port)
    local dir=$1; shift
    python3 tests/fixtures/serve.py "$dir" "$up_port" "$@" >"$work/upstream.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$up_port/" && return; sleep 0.1; done
    fail "upstream did not start"
}

# start_regfs CONFIG READY_PATH: mounts at $work/mnt, waits for READY_PATH under it.
start_regfs() {
    mkdir -p "$work/mnt"
    "$REGFS" mount --config "$1" "$work/mnt" >"$work/regfs.log" 2>&1 &
    regfs_pid=$!
    pids+=($regfs_pid)
    for _ in $(seq 150); do [ -e "$work/mnt/$2" ] && return; sleep 0.1; done
    fail "mount did not come up ($2 missing)"
}

# start_nginx [EXTRA_LOCATION]: the shipped config over $work/mnt; sets $port.
start_nginx() {
    port=$(free_port)
    local extra=${1:-}
    sed -e "s#listen 80;#listen 127.0.0.1:$port;#" -e "s#root /srv/mirror;#root $work/mnt;#" \
        scripts/nginx/regfs.conf >"$work/regfs-site.conf"
    if [ -n "$extra" ]; then
        python3 - "$work/regfs-site.conf" "$extra" <<'PY'
import sys
p, extra = sys.argv[1], sys.argv[2]
s = open(p).read()
i = s.rindex("}")
open(p, "w").write(s[:i] + "    " + extra + "\n" + s[i:])
PY
    fi
    mkdir -p "$work/nginx-tmp"
    cat >"$work/nginx.conf" <<CONF
user www-data;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    log_format e2e '\$request_uri \$status "\$sent_http_content_type" "\$http_user_agent"';
    access_log $work/access.log e2e;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    include $work/regfs-site.conf;
}
CONF
    nginx -t -q -c "$work/nginx.conf" || fail "nginx rejects the shipped config"
    nginx -c "$work/nginx.conf"
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.1; done
    fail "nginx did not start"
}

# stop_regfs: SIGTERM, and the mountpoint must be free afterwards.
stop_regfs() {
    kill -TERM "$regfs_pid"
    for _ in $(seq 100); do kill -0 "$regfs_pid" 2>/dev/null || break; sleep 0.1; done
    mountpoint -q "$work/mnt" && fail "SIGTERM left the mount behind"
    return 0
}
