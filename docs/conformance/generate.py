#!/usr/bin/env python3
"""The conformance matrix: every numbered normative statement of MQTT 5.0 and 3.1.1, with the tests that cite it,
or why it does not apply to this broker. Writes CONFORMANCE.md at the repository root.

    python3 docs/conformance/generate.py           # rewrite CONFORMANCE.md
    python3 docs/conformance/generate.py --check   # CI: fail if a statement lost its last test

Inputs, all in docs/conformance/:
- mqtt-v5.0-statements.txt, mqtt-v3.1.1-statements.txt: `MQTT-x.y.z-n<TAB>text`, one statement a line.
- mqtt-v3.1.1-equivalents.txt: `3.1.1 id<TAB>5.0 id`: the same rule under its MQTT 5.0 number, whose tests then
  count for the 3.1.1 statement too (the core runs both versions through the same code).
- explanations.txt: `version<TAB>id<TAB>reason` for statements that no server test can check (client obligations,
  features the broker does not offer).

The simulator's checkers (CHECKERS) count as tests too: they run on every step of every seed.
A test cites a statement by writing its id (`[MQTT-3.3.1-4]`) in its name, its doc comment, its body or its assertion
messages. An id means the MQTT 5.0 statement unless it exists only in 3.1.1 or is followed by `(3.1.1)`. Tests are
Rust `#[test]` functions, Python `test_*` functions under tests/ and MQTT.js `it(...)` cases under tests/mqttjs/.
Standard library only.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUTPUT = ROOT / "CONFORMANCE.md"
VERSIONS = ("5.0", "3.1.1")
STATEMENT_FILES = {"5.0": HERE / "mqtt-v5.0-statements.txt", "3.1.1": HERE / "mqtt-v3.1.1-statements.txt"}
EQUIVALENTS = HERE / "mqtt-v3.1.1-equivalents.txt"
EXPLANATIONS = HERE / "explanations.txt"
SCANNED = ("core", "io", "sim", "vopr", "tests", "fuzz", "bench")
SKIPPED_DIRS = {"target", "node_modules", ".git"}
# The simulator's checkers run on every step of every seed (vopr in CI): each of their functions counts as a test.
CHECKERS = ("sim/src/invariants.rs", "sim/src/world/liveness.rs")
CITATION = re.compile(r"MQTT-(\d+\.\d+\.\d+-\d+)\]?(\s*\(3\.1\.1\))?")


def read_statements(path: Path) -> dict[str, str]:
    statements = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        ident, sep, text = line.partition("\t")
        if not sep or not ident.startswith("MQTT-"):
            sys.exit(f"{path.name}:{number}: expected `MQTT-x.y.z-n<TAB>text`")
        if ident in statements:
            sys.exit(f"{path.name}:{number}: {ident} listed twice")
        statements[ident] = text.strip()
    return statements


def read_table(path: Path, columns: int) -> list[list[str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        row = [cell.strip() for cell in line.split("\t")]
        if len(row) != columns:
            sys.exit(f"{path.name}:{number}: expected {columns} tab-separated columns")
        rows.append(row)
    return rows


# --- finding tests -----------------------------------------------------------------------------------------------


def source_files():
    for top in SCANNED:
        base = ROOT / top
        if not base.exists():
            continue
        for path in sorted(base.rglob("*")):
            if any(part in SKIPPED_DIRS for part in path.relative_to(ROOT).parts):
                continue
            if path.suffix in (".rs", ".py", ".mjs", ".js") and path.is_file():
                yield path


def strip_rust_line(line: str, in_block_comment: bool) -> tuple[str, bool]:
    """The line with string and char literals and comments removed (for counting braces)."""
    out = []
    i = 0
    while i < len(line):
        if in_block_comment:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), True
            i, in_block_comment = end + 2, False
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            in_block_comment = True
            i += 2
            continue
        raw = re.match(r'r(#*)"', line[i:])
        if raw and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            closing = '"' + raw.group(1)
            end = line.find(closing, i + len(raw.group(0)))
            i = len(line) if end < 0 else end + len(closing)
            continue
        if c == '"':
            i += 1
            while i < len(line) and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
            continue
        char = re.match(r"'(\\.|[^\\'])'", line[i:])
        if char:
            i += len(char.group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out), in_block_comment


def rust_tests(path: Path, text: str, all_functions: bool = False):
    """(test name, line of its `fn`, citations) for every `#[test]` function (every function with
    `all_functions`): citations in the comments and attributes right above it and anywhere in its body."""
    pending: list[tuple[str, str]] = []  # citations in the comment/attribute block above the next item
    is_test = False
    depth = 0
    current = None  # [name, line, depth before its `fn`, citations, body opened]
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        found = CITATION.findall(line)
        code, in_block = strip_rust_line(line, in_block)
        if current is None:
            if not stripped or stripped.startswith(("//!", "/*!")):
                # A blank line or an inner (module) doc ends the block that belongs to the next item.
                pending, is_test = [], False
            elif stripped.startswith(("///", "//", "#[", "/*", "*")):
                pending.extend(found)
                if re.match(r"#\[(\w+::)*test\b", stripped):
                    is_test = True
            else:
                match = re.search(r"\bfn\s+(\w+)", code)
                if (is_test or all_functions) and match:
                    current = [match.group(1), number, depth, pending + found, False]
                pending, is_test = [], False
        else:
            current[3].extend(found)
        depth += code.count("{") - code.count("}")
        if current is not None:
            if depth > current[2]:
                current[4] = True
            elif current[4]:
                yield current[0], current[1], current[3]
                current = None


def python_tests(path: Path, text: str):
    lines = text.splitlines()
    pending: list[tuple[str, str]] = []
    current = None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if current is not None and stripped and indent <= current[2] and not stripped.startswith(("#", ")", "]")):
            yield current[0], current[1], current[3]
            current = None
        found = CITATION.findall(line)
        match = re.match(r"\s*(?:async\s+)?def\s+(test_\w+)", line)
        if match:
            current = [match.group(1), number, indent, pending + found]
            pending = []
        elif current is not None:
            current[3].extend(found)
        elif stripped.startswith(("#", "@")):
            pending.extend(found)
        elif stripped:
            pending = []
    if current is not None:
        yield current[0], current[1], current[3]


def js_tests(path: Path, text: str):
    lines = text.splitlines()
    starts = [
        (number, len(line) - len(line.lstrip()), match.group(2))
        for number, line in enumerate(lines, 1)
        if (match := re.match(r"\s*(it|test)\(\s*['\"`](.*?)['\"`]\s*,", line))
    ]
    for index, (number, indent, title) in enumerate(starts):
        end = len(lines)
        for later in range(number, len(lines)):
            line = lines[later]
            if line.strip() and len(line) - len(line.lstrip()) <= indent and line.strip().startswith(("})", "}")):
                end = later + 1
                break
        body = "\n".join(lines[number - 1 : end])
        yield re.sub(r"\s*\[MQTT-[^\]]*\]", "", title), number, CITATION.findall(body)


def find_tests():
    """{(version, id): [test]} where a test is (path, name, line)."""
    cited = defaultdict(list)
    unknown = []
    statements = {v: read_statements(f) for v, f in STATEMENT_FILES.items()}
    for path in source_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(errors="replace")
        if "MQTT-" not in text and "mqtt_" not in text:
            continue
        if rel in CHECKERS:
            tests = ((f"{name} (simulator check)", line, cites) for name, line, cites in rust_tests(path, text, True))
        elif path.suffix == ".rs":
            tests = rust_tests(path, text)
        elif path.suffix == ".py" and "/tests/" in f"/{rel}":
            tests = python_tests(path, text)
        elif path.suffix in (".mjs", ".js") and rel.startswith("tests/"):
            tests = js_tests(path, text)
        else:
            continue
        for name, line, citations in tests:
            # A test may also carry the id in its name, in snake case: `mqtt_3_1_2_22`.
            named = [(".".join(m[:3]) + "-" + m[3], "") for m in re.findall(r"mqtt_(\d+)_(\d+)_(\d+)_(\d+)", name)]
            for ident, marker in dict.fromkeys(list(citations) + named):
                key = f"MQTT-{ident}"
                if marker or key not in statements["5.0"]:
                    version = "3.1.1" if key in statements["3.1.1"] else None
                else:
                    version = "5.0"
                if version is None:
                    unknown.append((rel, line, key))
                    continue
                test = (rel, name, line)
                if test not in cited[(version, key)]:
                    cited[(version, key)].append(test)
    return statements, cited, unknown


# --- the matrix ----------------------------------------------------------------------------------------------------


def build():
    statements, cited, unknown = find_tests()
    equivalents = defaultdict(list)
    for old, new in read_table(EQUIVALENTS, 2):
        if old not in statements["3.1.1"] or new not in statements["5.0"]:
            sys.exit(f"{EQUIVALENTS.name}: {old} -> {new}: not a 3.1.1 and a 5.0 statement")
        equivalents[old].append(new)
    explanations = {}
    for version, ident, reason in read_table(EXPLANATIONS, 3):
        if ident not in statements.get(version, {}):
            sys.exit(f"{EXPLANATIONS.name}: {version} {ident} is not a statement of that version")
        explanations[(version, ident)] = reason
    rows = {v: [] for v in VERSIONS}
    for version in VERSIONS:
        for ident, text in statements[version].items():
            direct = cited.get((version, ident), [])
            via = []
            if version == "3.1.1":
                for new in equivalents.get(ident, []):
                    via.extend((new, t) for t in cited.get(("5.0", new), []))
            rows[version].append(
                {
                    "id": ident,
                    "text": text,
                    "tests": direct,
                    "via": via,
                    "why": explanations.get((version, ident)),
                }
            )
    return rows, unknown


def status(row) -> str:
    if row["tests"] or row["via"]:
        return "tested"
    if row["why"]:
        return "explained"
    return "neither"


def counts(rows):
    result = {}
    for version, items in rows.items():
        tally = defaultdict(int)
        for row in items:
            tally[status(row)] += 1
        result[version] = (len(items), tally["tested"], tally["explained"], tally["neither"])
    return result


def link(test) -> str:
    path, name, line = test
    return f"[`{name}`]({path}#L{line})"


def render(rows, unknown) -> str:
    out = [
        "# Conformance matrix",
        "",
        "Generated by `python3 docs/conformance/generate.py` from the statement lists in",
        "[docs/conformance/](docs/conformance/) and the tests that cite each statement id; do not edit by hand.",
        "CI (`.ci/run`) fails when a statement that had a test here loses its last one.",
        "",
        "| version | statements | tested | explained (not applicable to a server) | neither |",
        "|---|---|---|---|---|",
    ]
    for version, (total, tested, explained, neither) in counts(rows).items():
        out.append(f"| MQTT {version} | {total} | {tested} | {explained} | {neither} |")
    out += [
        "",
        "A statement is *tested* when a test cites its id; for MQTT 3.1.1, also when a test cites the same rule under",
        "its MQTT 5.0 number (listed in `mqtt-v3.1.1-equivalents.txt`; the core runs both versions through one code",
        "path). *Explained* statements are client obligations or features this broker does not offer",
        "(`explanations.txt`). *Neither* is the work left.",
        "",
    ]
    for version in VERSIONS:
        out += [f"## MQTT {version}", "", "| statement | status | tests, or why it does not apply |", "|---|---|---|"]
        for row in rows[version]:
            cells = [link(t) for t in row["tests"]]
            cells += [f"{link(t)} (as 5.0 {new})" for new, t in row["via"]]
            if not cells and row["why"]:
                cells = [row["why"]]
            text = row["text"].replace("|", "\\|")
            out.append(f"| **{row['id']}** {text} | {status(row)} | {'<br>'.join(cells) or '–'} |")
        out.append("")
    if unknown:
        out += ["## Citations of ids that are in neither list", ""]
        out += [f"- {path}:{line}: {ident}" for path, line, ident in unknown]
        out.append("")
    return "\n".join(out)


def tested_in(markdown: str) -> set[tuple[str, str]]:
    """The (version, id) pairs a rendered matrix lists as tested."""
    found, version = set(), None
    for line in markdown.splitlines():
        heading = re.match(r"## MQTT (\S+)", line)
        if heading:
            version = heading.group(1)
            continue
        row = re.match(r"\| \*\*(MQTT-[\d.]+-\d+)\*\* .*\| tested \|", line)
        if row and version:
            found.add((version, row.group(1)))
    return found


def main() -> int:
    rows, unknown = build()
    markdown = render(rows, unknown)
    for version, (total, tested, explained, neither) in counts(rows).items():
        print(f"MQTT {version}: {total} statements, {tested} tested, {explained} explained, {neither} neither")
    for path, line, ident in unknown:
        print(f"warning: {path}:{line} cites {ident}, which is in neither statement list")
    if "--check" in sys.argv[1:]:
        committed = OUTPUT.read_text() if OUTPUT.exists() else ""
        lost = sorted(tested_in(committed) - tested_in(markdown))
        for version, ident in lost:
            print(f"error: MQTT {version} {ident} was tested (CONFORMANCE.md) and no test cites it any more")
        if markdown != committed:
            print("note: CONFORMANCE.md is not up to date; run python3 docs/conformance/generate.py")
        return 1 if lost else 0
    OUTPUT.write_text(markdown)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
