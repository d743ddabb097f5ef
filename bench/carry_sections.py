#!/usr/bin/env python3
"""Carries the hand-written sections of the old BENCHMARKS.md into a newly generated one.

compare.sh regenerates its own sections (the comparison, the cluster and I/O driver tables, the failover section);
sections written by hand (findings, before/after tables of a change) would otherwise be lost on every run. A section
is a heading line (#, ## or ###) and what follows it up to the next heading. Each hand-written section (its heading
is not in the new file) is put back after the generated section it followed in the old file, in the old order.
Usage: carry_sections.py OLD NEW > MERGED
"""
import sys

GENERATED_TAIL = "Reproduce: `bench/compare.sh`"


def sections(text):
    """Splits into (heading, lines) blocks; the first block's heading is None if the text starts without one."""
    blocks, heading, lines = [], None, []
    for line in text.splitlines():
        if line.startswith(("# ", "## ", "### ")):
            if heading is not None or lines:
                blocks.append((heading, lines))
            heading, lines = line, []
        else:
            lines.append(line)
    blocks.append((heading, lines))
    return blocks


def main(old_path, new_path):
    old, new = sections(open(old_path).read()), sections(open(new_path).read())
    generated = {heading for heading, _ in new}
    carried, anchor = {}, None
    for heading, lines in old:
        if heading in generated:
            anchor = heading
            continue
        # The generated file ends with its own reproduce line: a carried block must not bring the old one along.
        lines = [line for line in lines if not line.startswith(GENERATED_TAIL)]
        carried.setdefault(anchor, []).append((heading, lines))
    out = []
    for index, (heading, lines) in enumerate(new):
        tail = []
        if index == len(new) - 1:
            # Keep the generated reproduce line last, after whatever is carried into the final section.
            while lines and (lines[-1].startswith(GENERATED_TAIL) or not lines[-1].strip()):
                tail.insert(0, lines.pop())
        if heading is not None:
            out.append(heading)
        out.extend(lines)
        for carried_heading, carried_lines in carried.get(heading, []):
            if out and out[-1].strip():
                out.append("")
            out.append(carried_heading)
            out.extend(carried_lines)
        if tail:
            if out and out[-1].strip():
                out.append("")
            out.extend(line for line in tail if line.strip() or line is not tail[0])
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: carry_sections.py OLD NEW > MERGED")
    main(sys.argv[1], sys.argv[2])
