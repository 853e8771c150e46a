#!/usr/bin/env python3
"""Write a synthetic npm registry for scripts/bench (B8): packuments only.

Usage: mknpm.py OUT PREFIX PACKAGES VERSIONS

PACKAGES packages named PREFIX00000, PREFIX00001, ... with VERSIONS versions
each, as OUT/<name>/index.json (what a static server answers for GET /<name>,
see scripts/bench.d/lib.sh static_upstream). Each version's `dist` names a
tarball beside it (<name>/-/<name>-<version>.tgz, relative) and a made-up,
unique sha1 `shasum`; no tarball exists, nothing is read.
"""
import hashlib
import json
import os
import sys


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    out, prefix = sys.argv[1], sys.argv[2]
    packages, versions = int(sys.argv[3]), int(sys.argv[4])
    for i in range(packages):
        name = f"{prefix}{i:05d}"
        vers = {}
        for v in range(versions):
            version = f"{v}.0.0"
            tgz = f"{name}-{version}.tgz"
            vers[version] = {
                "name": name, "version": version,
                "dist": {"tarball": f"{name}/-/{tgz}",
                         "shasum": hashlib.sha1(f"{name}/{tgz}".encode()).hexdigest()},
            }
        doc = {"_id": name, "name": name, "dist-tags": {"latest": f"{versions - 1}.0.0"},
               "versions": vers}
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with open(os.path.join(out, name, "index.json"), "w") as f:
            json.dump(doc, f)


if __name__ == "__main__":
    main()
