#!/usr/bin/env python3
"""Driver of scripts/soak.

build DIR: a synthetic PyPI upstream: 40 projects × 30 files of 4–400 KiB of
    random bytes, PEP 691 pages with sizes and sha256, BLAKE2b paths, and a
    second page set (".v2") in which a third of each project's files are
    replaced, so that swapping pages changes the served generation.
run DIR MNT CONFIG REGFS SECONDS: 16 reader threads pick random files from
    the stable set (in both page sets) and the changing set, read them through
    the mount and hash every byte; meanwhile the pages flip between v1 and v2
    and `regfs sync` runs every few seconds.
"""
import hashlib, json, os, random, subprocess, sys, threading, time

PROJECTS, FILES = 40, 30


def build(root):
    rnd = random.Random(7)
    pages = {}
    for p in range(PROJECTS):
        name = f"soak-{p}"
        files = []
        for f in range(FILES + FILES // 3):
            data = rnd.randbytes(rnd.randint(4 << 10, 400 << 10))
            b2 = hashlib.blake2b(data, digest_size=32).hexdigest()
            fn = f"{name.replace('-', '_')}-{f}.0-py3-none-any.whl"
            rel = f"packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{fn}"
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as out:
                out.write(data)
            files.append({"filename": fn, "url": f"../../{rel}", "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                          "size": len(data), "upload-time": "2024-01-01T00:00:00Z", "yanked": False, "path": rel})
        stable, extra = files[:FILES - FILES // 3], files[FILES - FILES // 3:]
        v1 = stable + extra[:FILES // 3]
        v2 = stable + extra[FILES // 3:]
        pages[name] = (v1, v2, stable)
    manifest = {"stable": [], "changing": []}
    for name, (v1, v2, stable) in pages.items():
        d = os.path.join(root, "simple", name)
        os.makedirs(d, exist_ok=True)
        for suffix, files in (("", v1), (".v2", v2)):
            doc = {"meta": {"api-version": "1.1"}, "name": name, "versions": [f"{i}.0" for i in range(FILES + FILES // 3)],
                   "files": [{k: v for k, v in f.items() if k != "path"} for f in files]}
            with open(os.path.join(d, "index.v1_json" + suffix), "w") as out:
                json.dump(doc, out)
        manifest["stable"] += [(f["path"], f["hashes"]["sha256"]) for f in stable]
        manifest["changing"] += [(f["path"], f["hashes"]["sha256"]) for f in v1 + v2 if f not in stable]
    listing = {"meta": {"api-version": "1.0"}, "projects": [{"name": n} for n in pages]}
    with open(os.path.join(root, "simple", "index.v1_json"), "w") as out:
        json.dump(listing, out)
    with open(os.path.join(root, "simple", "index.html"), "w") as out:
        out.write("".join(f'<a href="{n}/">{n}</a>\n' for n in pages))
    with open(os.path.join(root, "manifest.json"), "w") as out:
        json.dump(manifest, out)


def run(root, mnt, config, regfs, secs):
    m = json.load(open(os.path.join(root, "manifest.json")))
    stop = time.time() + secs
    stats = {"reads": 0, "bytes": 0, "corrupt": 0, "failed_stable": 0, "gone_changing": 0, "syncs": 0, "sync_failed": 0}
    lock = threading.Lock()
    errors = []

    def reader(seed):
        rnd = random.Random(seed)
        while time.time() < stop:
            stable = rnd.random() < 0.8
            path, sha = rnd.choice(m["stable"] if stable else m["changing"])
            try:
                with open(os.path.join(mnt, path), "rb") as f:
                    data = f.read()
            except OSError as e:
                with lock:
                    if stable:
                        stats["failed_stable"] += 1
                        errors.append(f"{path}: {e}")
                    else:
                        stats["gone_changing"] += 1
                continue
            ok = hashlib.sha256(data).hexdigest() == sha
            with lock:
                stats["reads"] += 1
                stats["bytes"] += len(data)
                if not ok:
                    stats["corrupt"] += 1
                    errors.append(f"{path}: CORRUPT")

    def flipper():
        v2 = False
        while time.time() < stop:
            time.sleep(4)
            v2 = not v2
            for p in range(PROJECTS):
                d = os.path.join(root, "simple", f"soak-{p}")
                src = "index.v1_json.v2" if v2 else "index.v1_json.v1"
                if not os.path.exists(os.path.join(d, "index.v1_json.v1")):
                    os.link(os.path.join(d, "index.v1_json"), os.path.join(d, "index.v1_json.v1"))
                tmp = os.path.join(d, ".swap")
                with open(os.path.join(d, src), "rb") as i, open(tmp, "wb") as o:
                    o.write(i.read())
                os.replace(tmp, os.path.join(d, "index.v1_json"))
            r = subprocess.run([regfs, "sync", "--config", config], capture_output=True, text=True)
            with lock:
                stats["syncs"] += 1
                stats["sync_failed"] += r.returncode != 0

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)] + [threading.Thread(target=flipper)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    status = json.loads(subprocess.run([regfs, "status", "--json", "--config", config], capture_output=True, text=True).stdout)[0]
    print(f"soak: {took:.0f}s, {stats['reads']} reads ({stats['reads'] / took:.0f}/s), {stats['bytes'] / 2**20:.0f} MiB, "
          f"{stats['syncs']} syncs ({stats['sync_failed']} failed), generation {status['generation']}")
    print(f"soak: regfs fetched {status['counters']['fetches']} artifacts ({status['counters']['fetched_bytes'] / 2**20:.0f} MiB), "
          f"cache hits {status['counters']['hits']}, misses {status['counters']['misses']}")
    print(f"soak: corrupt reads {stats['corrupt']}, failed reads of servable files {stats['failed_stable']}, "
          f"reads of files a swap removed {stats['gone_changing']}")
    for e in errors[:10]:
        print("soak:   " + e)
    sys.exit(1 if stats["corrupt"] or stats["failed_stable"] or stats["sync_failed"] else 0)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
