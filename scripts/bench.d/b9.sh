# B9 of scripts/bench (sourced): real clients, cold, through regfs+nginx
# against the same clients straight at the upstream, when every upstream
# response (404s included) takes B9_DELAY seconds (tests/fixtures/serve.py
# --delay): on loopback a transfer costs nothing, so the fixed delay stands
# for a far registry, and the ratio says what regfs adds on the way.
#
# One delayed upstream per ecosystem, serving that layout's test fixture
# (tests/fixtures/<layout>/build.py; for Maven the repository scripts/deps
# filled with `mvn dependency:get junit`). Per client and run: regfs with an
# empty cache and state (mounted, its first sync done: Debian's metadata is
# synced then, the lazy layouts have nothing yet) and nginx with the shipped
# config in front; the client with an empty cache of its own, timed:
#   pip   pip download --no-deps alpha==2.0 Beta_Pkg gamma==0.1 (PEP 691 pages)
#   apt   apt-get update, then apt-get download of three .debs (isolated apt)
#   mvn   mvn dependency:get junit:junit:4.13.2 (a settings.xml mirror of *)
#   npm   npm install of the fixture's app (3 packages, one scoped)
#   cargo cargo fetch of the fixture's app (4 crates)
#   go    go mod download of the fixture's app (3 modules, GOSUMDB off)
# and the same client straight at the upstream (npm and cargo: a copy of
# the fixture whose tarball and dl URLs are absolute, as those clients need).
# Median of B9_RUNS runs each. Target <= 1.3x the direct time.

b9_clients=${B9_CLIENTS:-"pip apt mvn npm cargo go"}

# b9_serve NAME ROOT [serve.py flags]: a delayed upstream for NAME; sets b9_port_NAME.
b9_serve() {
    local name=$1 root=$2 port
    shift 2
    port=$(free_port)
    python3 tests/fixtures/serve.py "$root" "$port" --delay "$B9_DELAY" "$@" >"$work/b9-up-$name.log" 2>&1 &
    pids+=($!)
    wait_http "http://127.0.0.1:$port/"
    printf -v "b9_port_$name" %s "$port"
}

b9_fixtures() {
    local f
    for f in pypi debian npm crates go; do
        python3 "tests/fixtures/$f/build.py" "target/tmp/$f-fixture" >/dev/null
        cp -a "target/tmp/$f-fixture" "$work/b9-$f"
    done
    b9_serve pypi "$work/b9-pypi" --pep691
    b9_serve debian "$work/b9-debian"
    b9_serve npm "$work/b9-npm" --npm
    b9_serve crates "$work/b9-crates"
    b9_serve go "$work/b9-go"
    [ -f target/maven-seed/junit/junit/4.13.2/junit-4.13.2.jar ] || scripts/deps >/dev/null
    b9_serve maven target/maven-seed
    # The direct clients' copies: absolute URLs where the fixture's are relative.
    cp -a "$work/b9-npm" "$work/b9-npm-direct"
    find "$work/b9-npm-direct" -name index.json -exec sed -i \
        "s#\"tarball\": \"#\"tarball\": \"http://127.0.0.1:PORT_NPM/#" {} +
    cp -a "$work/b9-crates" "$work/b9-crates-direct"
    b9_serve npm_direct "$work/b9-npm-direct" --npm
    b9_serve crates_direct "$work/b9-crates-direct"
    find "$work/b9-npm-direct" -name index.json -exec sed -i "s#PORT_NPM#$b9_port_npm_direct#" {} +
    printf '{"dl":"http://127.0.0.1:%s/dl/{crate}/{crate}-{version}.crate"}\n' "$b9_port_crates_direct" \
        >"$work/b9-crates-direct/index/config.json"
}

b9_regfs() { # a cold regfs (empty cache and state) with the six mirrors, nginx in front
    stop_nginx "$work"
    if [ -n "$regfs_pid" ] && kill -0 "$regfs_pid" 2>/dev/null; then stop_regfs; fi
    rm -rf "$work/cache" "$work/state"
    cat >"$work/regfs.toml" <<CONF
cache_dir = "$work/cache"
state_dir = "$work/state"
[[mirror]]
name = "pypi"
layout = "pypi"
upstream = "http://127.0.0.1:$b9_port_pypi/"
[[mirror]]
name = "debian"
layout = "debian"
upstream = "http://127.0.0.1:$b9_port_debian/debian/"
suites = ["bookworm", "bookworm-updates"]
components = ["main", "contrib"]
keyring = "$work/b9-debian/keyring.gpg"
[[mirror]]
name = "maven"
layout = "maven"
upstream = "http://127.0.0.1:$b9_port_maven/"
[[mirror]]
name = "npm"
layout = "npm"
upstream = "http://127.0.0.1:$b9_port_npm/"
public_url = "http://127.0.0.1:$port/npm"
[[mirror]]
name = "crates"
layout = "crates"
upstream = "http://127.0.0.1:$b9_port_crates/index/"
public_url = "http://127.0.0.1:$port/crates"
[[mirror]]
name = "go"
layout = "go"
upstream = "http://127.0.0.1:$b9_port_go/proxy/"
checksum_db = "fixture.test"
CONF
    start_regfs "$work/regfs.toml" debian/dists/bookworm-updates/InRelease
    start_nginx
}

# b9_<client> SIDE DIR: the client, cold, into the empty directory DIR,
# through regfs (SIDE regfs) or straight at the upstream (SIDE direct).
b9_pip() {
    local url="http://127.0.0.1:$port/pypi/simple/"
    [ "$1" = direct ] && url="http://127.0.0.1:$b9_port_pypi/simple/"
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null python3 -m pip download --no-deps --no-cache-dir \
        --disable-pip-version-check --index-url "$url" -d "$2/dl" alpha==2.0 Beta_Pkg gamma==0.1 >"$2/log" 2>&1
}

b9_apt() {
    local uri="http://127.0.0.1:$port/debian"
    [ "$1" = direct ] && uri="http://127.0.0.1:$b9_port_debian/debian"
    isolated_apt "$2/apt"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$work/b9-debian/keyring.gpg" >"$2/apt/sources/b9.sources"
    mkdir -p "$2/dl"
    APT_CONFIG=$2/apt/apt.conf apt-get update >"$2/log" 2>&1 &&
        (cd "$2/dl" && APT_CONFIG=$2/apt/apt.conf apt-get download hello-regfs libregfs1 regfs-doc >>"$2/log" 2>&1)
}

b9_mvn() {
    local url="http://127.0.0.1:$port/maven/"
    [ "$1" = direct ] && url="http://127.0.0.1:$b9_port_maven/"
    printf '<settings><mirrors><mirror><id>b9</id><mirrorOf>*</mirrorOf><url>%s</url></mirror></mirrors></settings>\n' \
        "$url" >"$2/settings.xml"
    mvn -B -q -s "$2/settings.xml" -Dmaven.repo.local="$2/m2" dependency:get -Dartifact=junit:junit:4.13.2 >"$2/log" 2>&1
}

b9_npm() {
    local url="http://127.0.0.1:$port/npm/"
    [ "$1" = direct ] && url="http://127.0.0.1:$b9_port_npm_direct/"
    cp -r "$work/b9-npm/app" "$2/app"
    : >"$2/npmrc"
    : >"$2/npmrc-global"
    (cd "$2/app" && env npm_config_userconfig="$2/npmrc" npm_config_globalconfig="$2/npmrc-global" \
        npm_config_update_notifier=false npm_config_audit=false npm_config_fund=false \
        npm install --registry "$url" --cache "$2/npm-cache" >"$2/log" 2>&1)
}

b9_cargo() {
    local url="http://127.0.0.1:$port/crates/index/"
    [ "$1" = direct ] && url="http://127.0.0.1:$b9_port_crates_direct/index/"
    cp -r "$work/b9-crates/app" "$2/app"
    mkdir -p "$2/home"
    printf '[source.crates-io]\nreplace-with = "b9"\n[source.b9]\nregistry = "sparse+%s"\n' "$url" >"$2/home/config.toml"
    (cd "$2/app" && CARGO_HOME="$2/home" CARGO_TARGET_DIR="$2/target" cargo fetch >"$2/log" 2>&1)
}

b9_go() {
    local url="http://127.0.0.1:$port/go"
    [ "$1" = direct ] && url="http://127.0.0.1:$b9_port_go/proxy"
    cp -r "$work/b9-go/app" "$2/app"
    (cd "$2/app" && env GOPROXY="$url" GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        GOMODCACHE="$2/modcache" GOCACHE="$2/gocache" GOPATH="$2/gopath" GONOSUMDB= GOPRIVATE= GONOPROXY= \
        go mod download >"$2/log" 2>&1)
}

group_latency() {
    local c i side t0 d m
    port=$(free_port)
    phase "B9: fixtures and delayed upstreams (${B9_DELAY}s a response)"
    b9_fixtures
    for c in $b9_clients; do
        for i in $(seq "$B9_RUNS"); do
            for side in direct regfs; do
                [ $side = regfs ] && b9_regfs
                mkdir -p "$work/b9/$c-$side-$i"
                phase "B9 $c run $i: $side"
                t0=$EPOCHREALTIME
                "b9_$c" "$side" "$work/b9/$c-$side-$i" ||
                    { tail -20 "$work/b9/$c-$side-$i/log" >&2; fail "B9: $c ($side) failed"; }
                elapsed "$t0" >>"$work/b9-$c-$side.times"
            done
        done
        d=$(median <"$work/b9-$c-direct.times")
        m=$(median <"$work/b9-$c-regfs.times")
        record B9 "$c, cold, upstream ${B9_DELAY}s a response" s "$m" "$d" "<=1.3x" \
            "median of $B9_RUNS; runs $(paste -sd/ "$work/b9-$c-regfs.times") vs $(paste -sd/ "$work/b9-$c-direct.times") s"
    done
    stop_nginx "$work"
    stop_regfs
}
