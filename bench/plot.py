#!/usr/bin/env python3
"""Draws bench/compare.sh's throughput results as a horizontal bar chart (SVG, no plotting library needed).

Usage: plot.py RESULTS.tsv [BROKER NAME...]. Input: tab-separated lines `label<TAB>msg/s<TAB>msg/s...`, one column per
broker, in the order of the names (default: mqtt-broker, Mosquitto). Output: SVG on stdout. The scale is
logarithmic: the brokers differ by an order of magnitude on some rows and not at all on the paced ones.
"""

import math
import sys
from xml.sax.saxutils import escape

ROW = 34
BAR = 12
LEFT = 260
WIDTH = 900
RIGHT = 40
TOP = 50
PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"]


def read(path, columns):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == columns + 1:
                rows.append((parts[0], [float(v) for v in parts[1:]]))
    return rows


def main():
    names = sys.argv[2:] or ["mqtt-broker", "Mosquitto"]
    colors = dict(zip(names, PALETTE))
    rows = read(sys.argv[1], len(names))
    if not rows:
        sys.exit("no rows to plot")
    row_height = max(ROW, BAR * len(names) + 10)
    top = max(max(values) for _, values in rows)
    decades = range(2, max(3, math.ceil(math.log10(top))) + 1)
    lo, hi = 2, decades[-1]
    span = WIDTH - LEFT - RIGHT

    def x(value):
        return LEFT + span * (math.log10(max(value, 10**lo)) - lo) / (hi - lo)

    height = TOP + row_height * len(rows) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">Messages per second received '
        "(log scale; same machine, same run)</text>",
    ]
    for i, (name, color) in enumerate(colors.items()):
        out.append(f'<rect x="{LEFT + i * 140}" y="30" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{LEFT + i * 140 + 16}" y="41">{name}</text>')
    for d in decades:
        gx = x(10**d)
        out.append(f'<line x1="{gx:.1f}" y1="{TOP}" x2="{gx:.1f}" y2="{height - 30}" stroke="#ddd"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - 14}" text-anchor="middle">1e{d}</text>')
    for i, (label, values) in enumerate(rows):
        y = TOP + i * row_height
        out.append(f'<text x="{LEFT - 8}" y="{y + BAR + 4}" text-anchor="end">{escape(label)}</text>')
        for j, (value, color) in enumerate(zip(values, colors.values())):
            by = y + j * BAR
            out.append(f'<rect x="{LEFT}" y="{by}" width="{x(value) - LEFT:.1f}" height="{BAR - 1}" fill="{color}"/>')
            out.append(f'<text x="{x(value) + 4:.1f}" y="{by + BAR - 2}" font-size="10">{value:,.0f}</text>')
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
