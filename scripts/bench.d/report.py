#!/usr/bin/env python3
"""Turn scripts/bench's result lines into the printed table and a JSON copy.

Usage: report.py RESULTS_TSV JSON_OUT MODE SECONDS MACHINE_JSON

Each line of RESULTS_TSV: row, metric, unit, regfs, baseline, target, note
(tab separated; "-" for none). Targets: ">=0.9x" / "<=2x" compare the ratio
regfs/baseline, "<=150" / "==1" compare the regfs figure alone.
"""
import json
import re
import sys


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def fmt(v):
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def judge(target, value, ratio):
    m = re.fullmatch(r"(>=|<=|==)([0-9.]+)(x?)", target)
    if not m:
        return None
    op, want, on_ratio = m.group(1), float(m.group(2)), m.group(3) == "x"
    got = ratio if on_ratio else value
    if got is None:
        return None
    return {">=": got >= want, "<=": got <= want, "==": got == want}[op]


def main():
    tsv, out, mode, seconds, machine = sys.argv[1:6]
    rows = []
    for line in open(tsv):
        f = line.rstrip("\n").split("\t")
        if len(f) < 7:
            continue
        row, metric, unit, regfs, base, target, note = f[:7]
        rv, bv = num(regfs), num(base)
        ratio = rv / bv if rv is not None and bv else None
        met = judge(target, rv, ratio)
        status = "ok"
        if note.startswith("skipped"):
            status = "skipped"
        elif note.startswith("error"):
            status = "error"
        rows.append({
            "row": row, "metric": metric, "unit": None if unit == "-" else unit,
            "regfs": rv, "baseline": bv,
            "ratio": round(ratio, 4) if ratio is not None else None,
            "target": None if target == "-" else target, "met": met,
            "status": status, "note": note or None,
        })
    machine = json.loads(machine)
    doc = {"mode": mode, "duration_s": float(seconds), "machine": machine, "rows": rows}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    head = ["row", "metric", "regfs", "baseline", "ratio", "target", "met?"]
    table = []
    for r in rows:
        unit = f" {r['unit']}" if r["unit"] else ""
        if r["status"] != "ok":
            table.append([r["row"], r["metric"] if r["metric"] != "-" else "", r["note"], "", "", "", ""])
            continue
        table.append([
            r["row"], r["metric"] + (f" ({r['unit']})" if unit else ""),
            fmt(r["regfs"]), fmt(r["baseline"]),
            f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-",
            r["target"] or "-",
            {True: "yes", False: "NO", None: "-"}[r["met"]],
        ])
    measured = [t for t in table if t[3:] != ["", "", "", ""]]
    widths = [max(len(str(x[i])) for x in [head] + (table if i < 2 else measured))
              for i in range(len(head))]
    # A skipped/error row's note spans the remaining columns.
    def line(cells):
        if cells[3:] == ["", "", "", ""]:
            return "  ".join([cells[0].ljust(widths[0]), cells[1].ljust(widths[1]), cells[2]])
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) if i < 5 else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print()
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print(line(t))
    print()
    notes = [r for r in rows if r["status"] == "ok" and r["note"]]
    for r in notes:
        print(f"  {r['row']} {r['metric']}: {r['note']}")
    if notes:
        print()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu']}), kernel {machine['kernel']}, "
          f"{machine['mem']}, load average {machine['load_start']} at start, {machine['load_end']} at end")
    print(f"regfs {machine['regfs']} (target/release/regfs); mode: {mode}, {float(seconds):.0f} s; "
          f"results also in {out}")


if __name__ == "__main__":
    main()
