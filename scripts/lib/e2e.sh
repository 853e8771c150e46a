# Shared harness of the end-to-end scripts (sourced, not run): a scratch
# directory cleaned on exit, free loopback ports, the layout's fixture built
# once per run, a `regfs mount`, nginx running the shipped
# scripts/nginx/regfs.conf with workers as www-data, and the checks every
# script makes: a cold run fetched each artifact from upstream once, a warm
# run asked upstream nothing.

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
    [ -n "${E2E_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap e2e_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fail() {
    echo "$E2E: FAIL: $*" >&2
    [ -f "$work/regfs.log" ] && tail -30 "$work/regfs.log" >&2
    exit 1
}

# fixture LAYOUT: the layout's fixture (tests/fixtures/LAYOUT/build.py),
# built once into target/tmp/LAYOUT-fixture (shared with cargo's tests and
# reused while its builder, its version and fixturelib.py are unchanged), copied to $work/upstream, which
# the script may change (tamper with) freely.
fixture() {
    local built=target/tmp/$1-fixture
    python3 "tests/fixtures/$1/build.py" "$built" || fail "building the $1 fixture"
    cp -a "$built" "$work/upstream"
}

# regfs_config MIRRORS: $work/regfs.toml, a scratch cache and state plus the
# [[mirror]] tables given.
regfs_config() {
    printf 'cache_dir = "%s/cache"\nstate_dir = "%s/state"\n%s\n' "$work" "$work" "$1" >"$work/regfs.toml"
}

# upstream_mark: where the upstream's request log stands now.
upstream_mark() { wc -l <"$work/upstream.log"; }

# expect_quiet_upstream MARK WHAT: WHAT (a warm run) made no upstream request since MARK.
expect_quiet_upstream() {
    local n=$(($(wc -l <"$work/upstream.log") - $1))
    [ "$n" = 0 ] || fail "$2 asked upstream $n more times"
    echo "  ok $2 asked upstream nothing"
}

# expect_fetched_once PATH...: each upstream path was fetched exactly once
# (a cold run fetched it, and no second reader fetched it again).
expect_fetched_once() {
    local p n
    for p; do
        n=$(grep -cF "\"GET /$p HTTP/" "$work/upstream.log" || true)
        [ "$n" = 1 ] || fail "upstream served /$p $n times, not once"
    done
    echo "  ok the cold run fetched each of the $# artifacts from upstream once"
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

# regfs_site ROOT PORT: the shipped scripts/nginx/regfs.conf with `listen`
# set to 127.0.0.1:PORT and `root` to ROOT, on stdout.
regfs_site() {
    sed -e "s#listen 80;#listen 127.0.0.1:$2;#" -e "s#root /srv/mirror;#root $1;#" \
        scripts/nginx/regfs.conf
}

# run_nginx DIR SITE_CONF PORT: an nginx (workers as www-data) whose http
# block includes SITE_CONF; its nginx.conf, nginx.pid, access.log,
# nginx-error.log and temp files live in DIR. Waits until PORT answers.
run_nginx() {
    local dir=$1 site=$2 port=$3
    mkdir -p "$dir/nginx-tmp"
    cat >"$dir/nginx.conf" <<CONF
user www-data;
worker_processes ${nginx_workers:-2};
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    log_format e2e '\$request_uri \$status "\$sent_http_content_type" "\$http_user_agent" \$request_time';
    access_log $dir/access.log e2e;
    client_body_temp_path $dir/nginx-tmp/body;
    proxy_temp_path $dir/nginx-tmp/proxy;
    fastcgi_temp_path $dir/nginx-tmp/fastcgi;
    uwsgi_temp_path $dir/nginx-tmp/uwsgi;
    scgi_temp_path $dir/nginx-tmp/scgi;
    include $site;
}
CONF
    nginx -t -q -c "$dir/nginx.conf" || fail "nginx rejects $site"
    nginx -c "$dir/nginx.conf"
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.1; done
    fail "nginx did not start ($dir)"
}

# start_nginx [EXTRA_LOCATION]: the shipped config over $work/mnt; sets $port.
start_nginx() {
    port=${port:-$(free_port)}
    local extra=${1:-}
    regfs_site "$work/mnt" "$port" >"$work/regfs-site.conf"
    if [ -n "$extra" ]; then
        python3 - "$work/regfs-site.conf" "$extra" <<'PY'
import sys
p, extra = sys.argv[1], sys.argv[2]
s = open(p).read()
i = s.rindex("}")
open(p, "w").write(s[:i] + "    " + extra + "\n" + s[i:])
PY
    fi
    run_nginx "$work" "$work/regfs-site.conf" "$port"
}

# stop_regfs: SIGTERM, and the mountpoint must be free afterwards.
stop_regfs() {
    kill -TERM "$regfs_pid"
    for _ in $(seq 100); do kill -0 "$regfs_pid" 2>/dev/null || break; sleep 0.1; done
    mountpoint -q "$work/mnt" && fail "SIGTERM left the mount behind"
    return 0
}

# isolated_apt DIR: an apt configuration that reads and writes only under DIR
# (use it with APT_CONFIG=DIR/apt.conf): sources are DIR/sources/*.sources,
# no dpkg status, amd64 only, no translations.
isolated_apt() {
    local d=$1
    mkdir -p "$d"/{parts,sources,prefs,state/lists/partial,cache/archives/partial}
    cat >"$d/apt.conf" <<CONF
Dir::Etc::main "/dev/null";
Dir::Etc::Parts "$d/parts";
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$d/sources";
Dir::Etc::PreferencesParts "$d/prefs";
Dir::State "$d/state";
Dir::State::status "/dev/null";
Dir::Cache "$d/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
CONF
}
