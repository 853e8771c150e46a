#!/usr/bin/env python3
"""A synthetic rpm-md repository for scripts/bench's B10: OUT/repodata/
repomd.xml and a gzip primary.xml of N packages shaped like a distribution's
(summary, description, provides, requires and a few files each; about 1.5 KB
of XML per package, as in large real repositories). Only the metadata
exists: no package is ever read. filelists and other are listed in
repomd.xml (with made-up checksums) but not written, as a sync never reads
them. Deterministic for a given N.

Usage: mkrpm.py OUT N
"""
import gzip
import hashlib
import sys
from pathlib import Path


def package(i):
    name = f"pkg{i:05d}-{'lib' if i % 3 else 'tools'}"
    arch = "noarch" if i % 4 == 0 else "x86_64"
    ver, rel = f"{1 + i % 7}.{i % 13}.{i % 5}", f"{1 + i % 3}.fc40"
    sha = hashlib.sha256(name.encode()).hexdigest()
    provides = "".join(f'      <rpm:entry name="{p}" flags="EQ" epoch="0" ver="{ver}" rel="{rel}"/>\n'
                       for p in (name, f"{name}({arch.replace('_', '-')})", f"lib{name}.so.1()(64bit)"))
    requires = "".join(f'      <rpm:entry name="{r}"/>\n' for r in (
        "libc.so.6()(64bit)", "libc.so.6(GLIBC_2.34)(64bit)", f"pkg{(i * 7) % 60000:05d}-lib",
        "rtld(GNU_HASH)", "/usr/bin/sh"))
    return f"""<package type="rpm">
  <name>{name}</name>
  <arch>{arch}</arch>
  <version epoch="0" ver="{ver}" rel="{rel}"/>
  <checksum type="sha256" pkgid="YES">{sha}</checksum>
  <summary>Synthetic package {i} for the regfs benchmark</summary>
  <description>This is synthetic package number {i}. It stands in for one of the many
libraries and tools of a large distribution repository, with a description of
a realistic length that the metadata parser has to read past.</description>
  <packager>Bench Build System &lt;bench@regfs.test&gt;</packager>
  <url>https://project{i}.upstream.test/</url>
  <time file="1700000000" build="1699990000"/>
  <size package="{20000 + i * 37 % 900000}" installed="{80000 + i}" archive="{81000 + i}"/>
  <location href="Packages/{name[0]}/{name}-{ver}-{rel}.{arch}.rpm"/>
  <format>
    <rpm:license>MIT AND (BSD-3-Clause OR GPL-2.0-or-later)</rpm:license>
    <rpm:vendor>regfs bench</rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>build{i % 50}.upstream.test</rpm:buildhost>
    <rpm:sourcerpm>{name}-{ver}-{rel}.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="{9000 + i % 4000}"/>
    <rpm:provides>
{provides}    </rpm:provides>
    <rpm:requires>
{requires}    </rpm:requires>
    <file>/usr/bin/{name}</file>
    <file type="dir">/usr/share/{name}</file>
  </format>
</package>
"""


def main():
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    (out / "repodata").mkdir(parents=True, exist_ok=True)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
           f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{n}">\n'
           + "".join(package(i) for i in range(n)) + "</metadata>\n").encode()
    gz = gzip.compress(xml, compresslevel=6, mtime=0)
    sha = hashlib.sha256(gz).hexdigest()
    (out / "repodata" / f"{sha}-primary.xml.gz").write_bytes(gz)
    data = [("primary", sha, hashlib.sha256(xml).hexdigest(), len(gz), len(xml))]
    for kind in ("filelists", "other"):
        fake = hashlib.sha256(kind.encode()).hexdigest()
        data.append((kind, fake, fake, 1000, 5000))
    entries = "".join(f"""  <data type="{k}">
    <checksum type="sha256">{c}</checksum>
    <open-checksum type="sha256">{o}</open-checksum>
    <location href="repodata/{c}-{k}.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>{s}</size>
    <open-size>{os}</open-size>
  </data>
""" for k, c, o, s, os in data)
    (out / "repodata" / "repomd.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" '
        'xmlns:rpm="http://linux.duke.edu/metadata/rpm">\n  <revision>1700000000</revision>\n'
        + entries + "</repomd>\n")
    print(f"mkrpm: {n} packages, primary.xml {len(xml)} bytes, gzip {len(gz)}", file=sys.stderr)


if __name__ == "__main__":
    main()
