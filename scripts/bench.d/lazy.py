#!/usr/bin/env python3
"""Time lookups that materialize one unit after another (scripts/bench B8).

Usage: lazy.py DIR PREFIX WIDTH COUNT TIMES_OUT

Lists DIR/<PREFIX><i zero-padded to WIDTH>/ for i = 0 .. COUNT-1, one after
another (each a lookup that materializes a new unit, then a readdir), and
writes each call's wall time in ms to TIMES_OUT, one a line. Prints a JSON
object: for each of the 100th, 1,000th and 10,000th unit that COUNT covers,
the median of the 20 calls around it (the 91st to the 110th, ...), and the
total of the first 10,000 (or all) calls in seconds. A call that fails or
lists nothing stops the run with an error.
"""
import json
import os
import statistics
import sys
import time


def main():
    d, prefix, width, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    times = []
    for i in range(count):
        path = os.path.join(d, f"{prefix}{i:0{width}d}")
        t0 = time.perf_counter()
        names = os.listdir(path)
        times.append((time.perf_counter() - t0) * 1000)
        if not names:
            sys.exit(f"lazy.py: {path} lists nothing")
    with open(out, "w") as f:
        f.writelines(f"{t:.3f}\n" for t in times)
    result = {}
    for k in (100, 1000, 10000):
        if k + 10 <= count:
            result[f"median_{k}"] = statistics.median(times[k - 10:k + 10])
    n = min(count, 10000)
    result["total_s"] = sum(times[:n]) / 1000
    result["total_n"] = n
    print(json.dumps(result))


if __name__ == "__main__":
    main()
