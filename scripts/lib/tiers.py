#!/usr/bin/env python3
"""Helpers of scripts/tiers-e2e (two regfs tiers, the second's upstream the
first's nginx export), one subcommand each:

  config TIER PORT1 PORT2 UPSTREAMS_JSON OUT
      the [[mirror]] tables of every fixture (tests/fixtures/*/manifest.json:
      `upstream`, `keys`), tier 1 on the fixture upstreams, tier 2 on tier
      1's nginx at PORT1; `public_url` names the tier's own nginx; the
      fixtures' deliberately hostile units are left out (tier 1 refuses
      them, so tier 2 would never see them)
  wait MOUNT
      until every mirror in MOUNT/.regfs/status.json has synced once; exits
      non-zero naming each mirror whose sync failed
  check FIXTURES_JSON LOGS MNT1 MNT2 PORT1 PORT2 OUT
      visits what each artifact needs, then: every fixture artifact read
      through tier 2's nginx is the fixture's bytes, and tier 1 fetched it
      from upstream once (LOGS/up-<mirror>.log); both mounts list the
      same tree; every file of tier 2 reads as tier 1's bytes (the
      tier's public_url aside), and a file tier 1 refuses to serve tier 2
      refuses too. Writes what tier 2 served to OUT (JSON) for `offline`.
  snapshot OUT MNT2
      records what tier 2 serves now of each file in OUT
  offline OUT FIXTURES_JSON MNT2 PORT2
      every file recorded in OUT still reads the same through tier 2's
      mount, and every fixture artifact through its nginx (tier 1 down).
"""
import hashlib
import json
import os
import sys
import time
import tomllib
import urllib.parse
import urllib.request

# List entries naming the fixtures' hostile units contain this.
HOSTILE = "hostile"

# Per mirror, files a client reads that the layout serves byte-identical to
# upstream (mirror path: path under the fixture root), read through tier 2's
# nginx beside the fixture's artifacts. The lazy ones (Maven's metadata,
# CRAN's Archive, Go's module files) materialize in tier 2 only if tier 1's
# export answers what tier 2 asks for them.
IDENTICAL = {
    "debian": {f"dists/bookworm/{f}": f"debian/dists/bookworm/{f}" for f in ("InRelease", "Release", "Release.gpg")},
    "maven": {p: f"maven2/{p}" for p in (
        "org/regfs/demo/greeter/maven-metadata.xml",
        "org/regfs/demo/greeter/maven-metadata.xml.sha1",
        "org/regfs/demo/greeter/1.1/greeter-1.1.pom",
        "org/regfs/demo/greeter/1.1/greeter-1.1.jar.sha512",
        "org/regfs/demo/greeter/2.0-SNAPSHOT/maven-metadata.xml",
        "org/regfs/demo/greeter/2.0-SNAPSHOT/greeter-2.0-20260101.120000-1.jar",
        "org/regfs/plugins/maven-metadata.xml",
    )},
    "crates": {p: p for p in ("index/1/q", "index/2/rd", "index/3/f/fxa", "index/re/gf/regfs-demo-core")},
    "go": {p: f"proxy/{p}" for p in (
        "example.com/regfs/core/@v/list",
        "example.com/regfs/core/@latest",
        "example.com/regfs/core/@v/v1.2.0.info",
        "example.com/regfs/core/@v/v1.2.0.mod",
        "sumdb/fixture.test/lookup/example.com/regfs/core@v1.2.0",
    )},
    "rpm": {p: p for p in ("os/repodata/repomd.xml", "os/repodata/repomd.xml.asc")},
    "rubygems": {p: p for p in ("versions", "info/fixapp", "info/fixlib")},
    "conda": {p: p for p in ("fixture/noarch/repodata_shards.msgpack.zst",)},
    "rustup": {f"dist/{f}": f"dist/{f}" for f in (
        "channel-rust-stable.toml", "channel-rust-stable.toml.sha256", "channel-rust-stable.toml.asc")},
    "cran": {p: p for p in (
        "src/contrib/PACKAGES", "src/contrib/PACKAGES.gz", "src/contrib/PACKAGES.rds",
        "src/contrib/Archive/fixdep/fixdep_1.0.tar.gz")},
    "cpan": {p: p for p in ("modules/02packages.details.txt.gz", "authors/id/R/RA/RAPP/CHECKSUMS")},
}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"no TOML for {v!r}")


def public_url(port, name):
    return f"http://127.0.0.1:{port}/{name}"


def config(tier, port1, port2, upstreams_json, out):
    upstreams = json.load(open(upstreams_json))
    own = port1 if tier == "1" else port2
    tables = []
    for name, fx in upstreams.items():
        m = json.load(open(os.path.join(fx["root"], "manifest.json")))
        keys = tomllib.loads(m["keys"].replace("{root}", fx["root"]))
        for k, v in list(keys.items()):
            if isinstance(v, list):
                keys[k] = [x for x in v if not (isinstance(x, str) and HOSTILE in x)]
        if "public_url" in keys:
            keys["public_url"] = public_url(own, name)
        if tier == "1":
            upstream = fx["url"] + m["upstream"]
        elif m["layout"] == "oci":
            # Registry clients ask for /v2/ at the root of the host.
            upstream = f"http://127.0.0.1:{port1}/"
        elif m["layout"] == "crates":
            # The sparse index root, beside which the mirror keeps dl/.
            upstream = public_url(port1, name) + "/index/"
        else:
            upstream = public_url(port1, name) + "/"
        lines = ["[[mirror]]", f"name = {json.dumps(name)}", f"layout = {json.dumps(m['layout'])}",
                 f"upstream = {json.dumps(upstream)}"]
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
        tables.append("\n".join(lines))
    open(out, "w").write("\n\n".join(tables) + "\n")


def wait(mount):
    status = os.path.join(mount, ".regfs/status.json")
    for _ in range(1200):
        try:
            mirrors = json.load(open(status))
        except (OSError, ValueError):
            mirrors = []
        if mirrors and all(m["sync"]["last_sync"] for m in mirrors):
            bad = [f"{m['name']}: {m['sync']['message']}" for m in mirrors if not m["sync"]["ok"]]
            if bad:
                sys.exit("sync failed: " + "; ".join(bad))
            return
        time.sleep(0.1)
    sys.exit(f"{status}: not every mirror synced in 120 s")


def get(port, rel):
    url = f"http://127.0.0.1:{port}/" + urllib.parse.quote(rel)
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def read(path):
    """The file's bytes, or None where the mount refuses to serve it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def walk(root):
    """Every path under root (directories end in /), by readdir alone: no
    stat, which would fetch a file whose metadata gives no size."""
    out, todo = set(), [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for e in it:
                p = rel + e.name
                if e.is_dir(follow_symlinks=False):
                    out.add(p + "/")
                    todo.append(p + "/")
                else:
                    out.add(p)
    return out


def digest_ok(data, digest):
    algo, want = digest.split(":", 1)
    if algo == "h1":  # Go's hash over the zip's files: the bytes check below covers it
        return True
    return hashlib.new(algo, data).hexdigest() == want


def check(fixtures_json, logs, mnt1, mnt2, port1, port2, out):
    fixtures = json.load(open(fixtures_json))
    served, problems = {}, []
    for name, fx in fixtures.items():
        m = json.load(open(os.path.join(fx["root"], "manifest.json")))
        # What makes each artifact listed, looked up in tier 2's mount.
        for a in m["artifacts"]:
            for v in a["visit"]:
                p = os.path.join(mnt2, name, v)
                if os.path.isdir(p):
                    os.listdir(p)
                else:
                    os.path.exists(p)
        n = 0
        for a in m["artifacts"]:
            want = open(os.path.join(fx["root"], a["upstream"]), "rb").read()
            try:
                got = get(port2, f"{name}/{a['path']}")
            except OSError as e:
                problems.append(f"{name}/{a['path']} through tier 2's nginx: {e}")
                continue
            if got != want or not digest_ok(got, a["digest"]):
                problems.append(f"{name}/{a['path']}: tier 2 served {len(got)} bytes that are not the fixture's")
                continue
            n += 1
        print(f"  {name}: {n}/{len(m['artifacts'])} fixture artifacts read through tier 2's nginx, the fixture's bytes")
        k = 0
        for rel, up in IDENTICAL.get(name, {}).items():
            want = open(os.path.join(fx["root"], up), "rb").read()
            try:
                got = get(port2, f"{name}/{rel}")
            except OSError as e:
                problems.append(f"{name}/{rel} through tier 2's nginx: {e}")
                continue
            if got != want:
                problems.append(f"{name}/{rel}: tier 2 served {len(got)} bytes, not upstream's {len(want)}")
                continue
            k += 1
        if k:
            print(f"  {name}: {k} metadata files through tier 2's nginx, upstream's bytes")
        if name != "oci":  # docker-registry logs no request lines
            log = open(os.path.join(logs, f"up-{name}.log")).read()
            for a in m["artifacts"]:
                k = log.count(f'"GET /{a["upstream"]} HTTP/')
                if k != 1:
                    problems.append(f"{name}: tier 1 fetched {a['upstream']} from upstream {k} times, not once")
        # The same tree on both tiers, and the same bytes in every file.
        t1, t2 = walk(os.path.join(mnt1, name)), walk(os.path.join(mnt2, name))
        # Lazy layouts list what was looked up: tier 1 has seen tier 2's
        # lookups (and those it made to verify, like Go's checksum database);
        # tier 2 has what it served. Each looks up what the other lists.
        for mnt, extra in ((mnt2, t1 - t2), (mnt1, t2 - t1)):
            for p in sorted(extra):
                os.path.lexists(os.path.join(mnt, name, p))
        t1, t2 = walk(os.path.join(mnt1, name)), walk(os.path.join(mnt2, name))
        if t1 != t2:
            problems.append(f"{name}: the listings differ: only tier 1 {sorted(t1 - t2)[:8]}, only tier 2 {sorted(t2 - t1)[:8]}")
        u1, u2 = public_url(port1, name).encode(), public_url(port2, name).encode()
        same = refused = rewrites = 0
        for rel in sorted(p for p in t1 & t2 if not p.endswith("/")):
            b1, b2 = read(os.path.join(mnt1, name, rel)), read(os.path.join(mnt2, name, rel))
            if b1 is None:
                if b2 is not None:
                    problems.append(f"{name}/{rel}: tier 1 refuses it, tier 2 served {len(b2)} bytes")
                refused += 1
                continue
            if b2 is None:
                problems.append(f"{name}/{rel}: tier 1 serves it, tier 2 refuses it")
                continue
            if b2.replace(u2, u1) != b1:
                problems.append(f"{name}/{rel}: tier 2's bytes differ from tier 1's")
                continue
            if u1 in b2:
                problems.append(f"{name}/{rel}: tier 2 sends its clients to tier 1 ({u1.decode()})")
            rewrites += u2 in b2
            served[f"{name}/{rel}"] = hashlib.sha256(b2).hexdigest()
            same += 1
        if ("public_url" in m["keys"]) != (rewrites > 0):
            problems.append(f"{name}: {rewrites} files of tier 2 name its public_url")
        print(f"  {name}: {len(t2)} paths listed alike; {same} files identical on both tiers"
              + (f" ({rewrites} naming each tier's own public_url)" if rewrites else "")
              + (f", {refused} refused by both (upstream's bytes fail verification)" if refused else ""))
    json.dump(served, open(out, "w"))
    if problems:
        sys.exit("\n".join(problems))


def snapshot(out, mnt2):
    """What tier 2 serves now of each file `check` recorded (a lazy index,
    like PyPI's root page, lists what clients have looked up since)."""
    served = json.load(open(out))
    for rel in served:
        served[rel] = hashlib.sha256(open(os.path.join(mnt2, rel), "rb").read()).hexdigest()
    json.dump(served, open(out, "w"))


def offline(out, fixtures_json, mnt2, port2):
    served = json.load(open(out))
    fixtures = json.load(open(fixtures_json))
    problems = []
    for rel, sha in served.items():
        try:
            b = open(os.path.join(mnt2, rel), "rb").read()
        except OSError as e:
            problems.append(f"{rel}: with tier 1 down: {e}")
            continue
        if hashlib.sha256(b).hexdigest() != sha:
            problems.append(f"{rel}: with tier 1 down, other bytes: {b[:300]!r}")
    n = 0
    for name, fx in fixtures.items():
        for a in json.load(open(os.path.join(fx["root"], "manifest.json")))["artifacts"]:
            want = open(os.path.join(fx["root"], a["upstream"]), "rb").read()
            try:
                ok = get(port2, f"{name}/{a['path']}") == want
            except OSError as e:
                ok, a["err"] = False, e
            if not ok:
                problems.append(f"{name}/{a['path']} through tier 2's nginx with tier 1 down: {a.get('err', 'other bytes')}")
            n += 1
    if problems:
        sys.exit("\n".join(problems))
    print(f"  {len(served)} files from tier 2's mount and {n} fixture artifacts through its nginx, as before")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"config": config, "wait": wait, "check": check, "snapshot": snapshot, "offline": offline}[cmd](*args)
