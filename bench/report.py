"""Tables of results: plain text for the terminal, Markdown for docs/benchmarks.md."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .common import Cond, Row, Stat, Target, Workload
from .systems import TDB

SECTION = "## Performance against the alternatives"


def fmt(stat: Stat | None, unit: str) -> str:
    """A figure in a readable unit (seconds -> ms or s, bytes -> KiB/MiB/GiB)."""
    if stat is None:
        return "-"
    v = stat.median
    if unit == "s":
        return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"
    if unit == "bytes":
        for div, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= div:
                return f"{v / div:,.1f} {name}"
        return f"{v:,.0f} B"
    if unit == "x":
        return f"{v:.3f}x"
    return f"{v:,.0f}"


def _ratio(row: Row) -> str:
    r, best = row.ratio(), row.best_peer()
    return "-" if r is None or best is None else f"{r:.2f}x {best[0]}"


def _met(row: Row) -> str:
    m = row.met()
    return "" if row.target is None else "?" if m is None else "met" if m else "MISSED"


def cells(w: Workload) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a workload's table, as strings (a row without figures or target is left out)."""
    header = ["operation", *w.systems, "tensordb / best peer", "target", "met?"]
    body = [[r.op, *(fmt(r.values.get(s), r.unit) for s in w.systems), _ratio(r),
             r.target.text if r.target else "", _met(r)]
            for r in w.rows if r.target is not None or any(v is not None for v in r.values.values())]
    return header, body


def text_table(w: Workload) -> str:
    """A workload's table for the terminal."""
    header, body = cells(w)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [f"{w.key} {w.title}: {w.scale}  ({w.seconds:.0f} s)"]
    for row in [header, *body]:
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    lines += [f"  skipped {k}: {v}" for k, v in w.skipped.items()]
    lines += [f"  note: {n}" for n in w.notes]
    return "\n".join(lines)


def _versus(row: Row) -> str:
    """tensordb's figure against each peer its target names, e.g. ``"1.31x JSON+binref, 0.02x Zarr v3"``."""
    assert row.target is not None
    mine, out = row.values.get(TDB), []
    for peer in dict.fromkeys(c.peer for c in row.target.conds if c.peer is not None):
        other = row.values.get(peer)
        if mine is not None and other is not None and other.median:
            out.append(f"{mine.median / other.median:.2f}x {peer}")
    return ", ".join(out)


def missed(workloads: list[Workload]) -> list[str]:
    """Each missed target as ``"W1 row: figure (ratios); target ..."``, tensordb's figure first."""
    out = []
    for w in workloads:
        for r in w.rows:
            if r.target is not None and r.met() is False:
                versus = _versus(r)
                out.append(f"{w.key} {r.op}: {fmt(r.values.get(TDB), r.unit)}"
                           f"{f' ({versus})' if versus else ''}; target {r.target.text}")
    return out


def check_summary(workloads: list[Workload]) -> str:
    """How many targets were met, missed and not evaluated, then the misses one per line."""
    outcomes = [r.met() for w in workloads for r in w.rows if r.target is not None]
    lines = [f"targets: {outcomes.count(True)} met, {outcomes.count(False)} missed, "
             f"{outcomes.count(None)} not evaluated (a figure is missing)"]
    return "\n".join([*lines, *(f"  MISSED {m}" for m in missed(workloads))])


def markdown_table(w: Workload) -> str:
    """A workload's table in Markdown (misses in bold)."""
    header, body = cells(w)
    out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 3) + "|---|---|"]
    for row in body:
        if row[-1] == "MISSED":
            row = [*row[:-1], "**MISSED**"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


def markdown_section(workloads: list[Workload], info: dict[str, Any], command: str, seconds: float,
                     extra: str = "") -> str:
    """The whole "Performance against the alternatives" section."""
    v = info["versions"]
    lines = [
        SECTION, "",
        "Every claim is a ratio measured side by side, in one run, on one machine, on the same generated "
        "data (how: the section above). Rows without `in-process` are timed in fresh processes, as a user's "
        "script pays them: interpreter start-up and the system's own imports included. `in-process` rows "
        "time the same code inside the benchmark's process. Each operation runs several times (median shown; "
        "min/max in the JSON output). `tensordb / best peer` divides tensordb's median by the best other "
        "system's (lower is better everywhere but the streaming throughput ratio); `target` is the row's "
        "target (`bench/targets.py`), checked against the figures of this run. Table S gives the physical "
        "limits of start-up here: the interpreter alone, and numpy, apsw and blosc2 alone.", "",
        "### Command", "", "```console", f"$ {command}", "```", "",
        f"Total duration: {seconds / 60:.1f} min. Options: `--quick` (every workload scaled down, fresh "
        "processes only, the peers that targets name, under 4 minutes), `--check` (exit status 1 when a "
        "target is missed), `--only S,W1,W3`, `--json out.json`, `--markdown` (rewrites this section), "
        "`--markdown-from out.json` (the same, from a saved run), `--w2-shape ROWSxCOLS`, "
        "`--w4 TREESxMIB`, `--repeat N`.", "",
        "### Machine", "", "| | |", "|---|---|",
        f"| CPU | `{info['cpu']}` |", f"| Cores | {info['cores']} |",
        f"| RAM | {info['ram_bytes'] / 2**30:.0f} GiB |", f"| OS | {info['platform']} |",
        f"| Python | {info['python']} |",
        f"| Libraries | numpy {v['numpy']}, blosc2 {v['blosc2']}, apsw {v['apsw']} (SQLite {v['sqlite']}), "
        f"zarr {v['zarr']}, h5py {v['h5py']} (HDF5 {v.get('hdf5', '?')}), hdf5plugin {v['hdf5plugin']} |",
        f"| tensordb | {v['tensordb']} at commit `{info['commit'] or '?'}` |", "",
    ]
    for w in workloads:
        lines += [f"### {w.key} {w.title}", "", f"{w.scale}. Duration {w.seconds:.0f} s.", "", markdown_table(w), ""]
        lines += [f"- Skipped {k}: {s}." for k, s in w.skipped.items()]
        lines += [f"- {n}" for n in w.notes]
        lines.append("")
    if extra:
        lines += [extra.strip(), ""]
    return "\n".join(lines)


def write_markdown(path: Path, section: str) -> None:
    """Replace (or append) the section in ``path``, keeping every other section as is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text.rstrip() + "\n")


def to_json(workloads: list[Workload]) -> list[dict[str, Any]]:
    """Every figure (median, min, max, n), with ratios and target outcomes."""
    out = []
    for w in workloads:
        d = asdict(w)
        for row, rd in zip(w.rows, d["rows"]):
            rd["ratio_vs_best_peer"] = row.ratio()
            best = row.best_peer()
            rd["best_peer"] = best[0] if best else None
            rd["target"] = row.target.text if row.target else None
            rd["target_conds"] = [asdict(c) for c in row.target.conds] if row.target else None
            rd["met"] = row.met()
        out.append(d)
    return out


def from_json(data: list[dict[str, Any]]) -> list[Workload]:
    """The workloads :func:`to_json` wrote (its derived fields are recomputed, not read)."""
    def stat(d: dict[str, Any] | None) -> Stat | None:
        return None if d is None else Stat(d["median"], d["min"], d["max"], d["n"])

    workloads = []
    for wd in data:
        rows = []
        for rd in wd["rows"]:
            conds = rd.get("target_conds")
            target = None if rd["target"] is None else Target(rd["target"], tuple(Cond(**c) for c in conds or ()))
            rows.append(Row(rd["op"], rd["unit"], {k: stat(v) for k, v in rd["values"].items()}, target, rd["note"]))
        workloads.append(Workload(wd["key"], wd["title"], wd["scale"], wd["systems"], rows, wd["skipped"],
                                  wd["notes"], wd["seconds"]))
    return workloads
