#!/usr/bin/env python3
"""Write a synthetic PyPI upstream for scripts/bench.

Usage: mkpypi.py OUT PREFIX PROJECTS FILES SIZE [--fake | --wheels] [--native-tree DIR]

PROJECTS projects (named PREFIX when PROJECTS is 1, else PREFIX0000, ...)
with FILES artifacts of SIZE bytes each, in the layout and page format of
tests/fixtures/pypi/build.py (PEP 691 JSON pages with size and sha256,
files under packages/<xx>/<yy>/<60 hex>/<filename>; here the hex is the
file's sha256):

  OUT/simple/index.v1_json            root listing (for `projects = ["PREFIX*"]`;
                                      projects of earlier runs into OUT are kept)
  OUT/simple/<project>/index.v1_json  one PEP 691 page per project (and a PEP
                                      503 index.html, for clients that ask HTML)
  OUT/packages/.../<filename>         random bytes (seeded, so reruns match)
  OUT/PREFIX.files                    "<path> <sha256> <size>" per artifact

--fake writes no artifact bytes: each digest is made up (unique) and only the
JSON pages exist, for the metadata-scale benchmark where nothing is read.
--wheels makes each artifact a real, installable wheel (METADATA, WHEEL and
RECORD in its .dist-info, a module and SIZE bytes of seeded random data
stored uncompressed), for clients that open what they download (pip).
--native-tree DIR also creates, as empty files on disk, the tree a mount of
this upstream shows under <mount>/<mirror>/ (simple/ pages and packages/),
the baseline for `find`.
"""
import base64
import hashlib
import json
import os
import random
import sys
import zipfile

UPLOADED = "2024-01-01T09:00:00.000000Z"
CHUNK = 16 << 20


def write_random(path, size, seed):
    """Random bytes into path; returns their sha256."""
    rng, h = random.Random(seed), hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, CHUNK)
            b = rng.randbytes(n)
            h.update(b)
            f.write(b)
            left -= n
    return h.hexdigest()


def write_wheel(path, name, version, size, seed):
    """A minimal valid wheel of about size bytes into path; returns its sha256."""
    info = f"{name}-{version}.dist-info"
    members = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{name}.data/data/{name}.bin": random.Random(seed).randbytes(size),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: mkpypi\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}\n"
        for n, b in members.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for n, b in [*members.items(), (f"{info}/RECORD", record.encode())]:
            z.writestr(zipfile.ZipInfo(n, (2024, 1, 1, 0, 0, 0)), b)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def html_page(title, links):
    return ("<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.0">\n'
            f"    <title>{title}</title>\n  </head>\n  <body>\n    <h1>{title}</h1>\n"
            + "".join(f"    {link}<br />\n" for link in links) + "  </body>\n</html>\n")


def main():
    args = sys.argv[1:]
    fake, wheels = "--fake" in args, "--wheels" in args
    native = None
    if "--native-tree" in args:
        i = args.index("--native-tree")
        native = args[i + 1]
        del args[i:i + 2]
    args = [a for a in args if a not in ("--fake", "--wheels")]
    if len(args) != 5:
        sys.exit(__doc__)
    out, prefix = args[0], args[1]
    nproj, nfiles, size = int(args[2]), int(args[3]), int(args[4])
    names = [prefix] if nproj == 1 else [f"{prefix}{i:04d}" for i in range(nproj)]
    os.makedirs(os.path.join(out, "simple"), exist_ok=True)
    listing = []
    for pi, name in enumerate(names):
        files = []
        for fi in range(nfiles):
            filename = f"{name}-{fi}.0-py3-none-any.whl"
            if fake:
                sha = hashlib.sha256(f"{name}/{filename}".encode()).hexdigest()
            else:
                tmp = os.path.join(out, f".{filename}.part")
                if wheels:
                    sha = write_wheel(tmp, name, f"{fi}.0", size, f"{name}/{fi}")
                else:
                    sha = write_random(tmp, size, f"{name}/{fi}")
            rel = f"packages/{sha[:2]}/{sha[2:4]}/{sha[4:]}/{filename}"
            fsize = size if fake else os.path.getsize(tmp)
            if not fake:
                os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
                os.rename(tmp, os.path.join(out, rel))
            files.append((rel, sha, filename, fsize))
            listing.append(f"{rel} {sha} {fsize}\n")
        page = {
            "meta": {"api-version": "1.1", "_last-serial": pi + 1},
            "name": name,
            "versions": [f"{fi}.0" for fi in range(nfiles)],
            "files": [{
                "filename": filename, "url": f"../../{rel}",
                "hashes": {"sha256": sha}, "requires-python": None,
                "size": fsize, "upload-time": UPLOADED, "yanked": False,
            } for rel, sha, filename, fsize in files],
        }
        os.makedirs(os.path.join(out, "simple", name), exist_ok=True)
        with open(os.path.join(out, "simple", name, "index.v1_json"), "w") as f:
            json.dump(page, f)
        if not fake:
            with open(os.path.join(out, "simple", name, "index.html"), "w") as f:
                f.write(html_page(f"Links for {name}", [
                    f'<a href="../../{rel}#sha256={sha}">{filename}</a>'
                    for rel, sha, filename, _ in files]))
        if native:
            for rel, *_ in files:
                p = os.path.join(native, rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                open(p, "wb").close()
            d = os.path.join(native, "simple", name)
            os.makedirs(d, exist_ok=True)
            for page_name in ("index.html", "index.v1_html", "index.v1_json"):
                open(os.path.join(d, page_name), "wb").close()
    root = os.path.join(out, "simple", "index.v1_json")
    if os.path.exists(root):
        with open(root) as f:
            names = sorted({p["name"] for p in json.load(f)["projects"]} | set(names))
    with open(root, "w") as f:
        json.dump({"meta": {"api-version": "1.1"},
                   "projects": [{"name": n} for n in names]}, f)
    with open(os.path.join(out, "simple", "index.html"), "w") as f:
        f.write(html_page("Simple index", [f'<a href="{n}/">{n}</a>' for n in names]))
    if native:
        for page_name in ("index.html", "index.v1_html", "index.v1_json"):
            open(os.path.join(native, "simple", page_name), "wb").close()
    with open(os.path.join(out, f"{prefix}.files"), "w") as f:
        f.writelines(listing)


if __name__ == "__main__":
    main()
