#!/usr/bin/env python3
"""Draws scripts/bench.sh's table as an SVG chart (python3 standard library only).

    scripts/bench-chart.py RESULTS.json [OUT.svg]     (default: RESULTS.svg)

Left: each scenario's rate as a bar against the limit of the same run (farmlb-gen
through dpdk-testpmd io forwarding, the dashed line), labelled with the rate and
its share of the limit. For http the bar is the frames farmlb forwarded and the
label the connections per second. Right: the worker's own cost per frame while
it had frames (busy_ns / rx). One row per result, in the JSON's order; the same
JSON always gives the same SVG.
"""

import json
import os
import sys
from xml.sax.saxutils import escape

ROW = 26
TOP = 62
LABEL_W = 190
RATE_W = 330
GAP = 110
NS_W = 210
RIGHT = 70
FONT = "font-family=\"DejaVu Sans, Liberation Sans, Arial, sans-serif\""


def flows_text(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}K"
    return str(n)


def nice_ceil(x):
    """The smallest of 1, 2, 5 x 10^k at or above x."""
    if x <= 0:
        return 1.0
    p = 1.0
    while p * 10 <= x:
        p *= 10
    while p > x:
        p /= 10
    for m in (1, 2, 5, 10):
        if m * p >= x:
            return m * p
    return 10 * p


def fmt(x):
    return f"{x:.2f}"


def chart(doc):
    results = doc.get("results", [])
    limit = float(doc.get("limit", {}).get("forwarded_mpps") or 0)
    rates = [float(r.get("frames_forwarded_mpps") or r.get("forwarded_mpps") or 0) for r in results]
    nss = [r.get("worker_ns_per_frame") for r in results]
    rate_max = nice_ceil(max([limit] + rates + [0.001]))
    ns_max = nice_ceil(max([n for n in nss if n] + [1]))
    width = LABEL_W + RATE_W + GAP + NS_W + RIGHT
    height = TOP + ROW * len(results) + 44
    load = " ".join(doc.get("machine", {}).get("loadavg_end", []))
    title = (f"farmlb on net_memif, 64-byte frames, {doc.get('workers', 1)} worker(s): "
             f"{doc.get('date', '?')}, load {load or '?'}")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold" {FONT}>{escape(title)}</text>',
    ]
    x0 = LABEL_W
    x1 = LABEL_W + RATE_W + GAP
    out.append(f'<text x="{x0}" y="44" font-size="12" {FONT}>Mpps (bars) against the limit '
               f'{limit:.2f} Mpps (dashed)</text>')
    out.append(f'<text x="{x1}" y="44" font-size="12" {FONT}>worker ns per frame</text>')
    bottom = TOP + ROW * len(results)
    # Axes: 0, half, full.
    for f in (0, 0.5, 1):
        x = x0 + RATE_W * f
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle" fill="#555" {FONT}>'
                   f'{rate_max * f:g}</text>')
        x = x1 + NS_W * f
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle" fill="#555" {FONT}>'
                   f'{ns_max * f:g}</text>')
    for i, (r, rate, ns) in enumerate(zip(results, rates, nss)):
        y = TOP + ROW * i
        name = f"{r.get('scenario', '?')} {flows_text(int(r.get('flows', 0)))}"
        share = rate / limit if limit else None
        if r.get("connections_per_sec"):
            what = f"{r['connections_per_sec'] / 1000:.0f} k conn/s, {fmt(rate)} Mpps"
        else:
            what = f"{fmt(rate)} Mpps"
        if share is not None:
            what += f" · {100 * share:.0f}%"
        w = RATE_W * rate / rate_max
        out.append(f'<g class="scenario" data-scenario="{escape(str(r.get("scenario", "?")))}">')
        out.append(f'<text x="{x0 - 8}" y="{y + 14}" font-size="12" text-anchor="end" {FONT}>{escape(name)}</text>')
        out.append(f'<rect class="rate" x="{x0}" y="{y + 2}" width="{w:.1f}" height="{ROW - 8}" fill="#2f6fdf"/>')
        out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 14}" font-size="11" {FONT}>{escape(what)}</text>')
        if ns:
            wn = NS_W * ns / ns_max
            out.append(f'<rect class="ns" x="{x1}" y="{y + 2}" width="{wn:.1f}" height="{ROW - 8}" fill="#d9480f"/>')
            out.append(f'<text x="{x1 + wn + 4:.1f}" y="{y + 14}" font-size="11" {FONT}>{ns:.0f} ns</text>')
        else:
            out.append(f'<text x="{x1 + 4}" y="{y + 14}" font-size="11" fill="#555" {FONT}>–</text>')
        out.append("</g>")
    if limit:
        x = x0 + RATE_W * limit / rate_max
        out.append(f'<line class="limit" x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" '
                   f'stroke="#222" stroke-width="1.5" stroke-dasharray="5,3"/>')
    out.append(f'<text x="10" y="{height - 8}" font-size="10" fill="#555" {FONT}>'
               f'scripts/bench.sh: farmlb-gen closed loop; limit = the same generator through dpdk-testpmd io forwarding'
               f'</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    src = argv[1]
    dst = argv[2] if len(argv) == 3 else os.path.splitext(src)[0] + ".svg"
    with open(src) as f:
        doc = json.load(f)
    with open(dst, "w") as f:
        f.write(chart(doc))
    print(f"written: {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
