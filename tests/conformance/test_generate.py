"""The conformance matrix generator (docs/conformance/generate.py): how it finds tests and their citations, and
the check that fails CI when a statement loses its last test."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "conformance"))
import generate  # noqa: E402

RUST = '''
//! Module docs cite [MQTT-9.9.9-9], which belongs to no single test.

/// Doc comment: [MQTT-3.1.0-2].
#[test]
fn second_connect() {
    let s = format!("{{ not a brace }} {}", 1);
    assert!(true, "closes [MQTT-4.13.1-1]");
}

fn helper() {
    // [MQTT-1.1.1-1] in a helper is not a test's citation
}

#[test]
fn keep_alive_mqtt_3_1_2_22() {
    let c = '{';
}
'''


def test_rust_citations_come_from_doc_comments_bodies_and_names():
    tests = {name: (line, cites) for name, line, cites in generate.rust_tests(Path("x.rs"), RUST)}
    assert set(tests) == {"second_connect", "keep_alive_mqtt_3_1_2_22"}
    assert [c[0] for c in tests["second_connect"][1]] == ["3.1.0-2", "4.13.1-1"]
    assert tests["keep_alive_mqtt_3_1_2_22"][1] == []
    assert tests["second_connect"][0] == 6


PYTHON = '''
def helper():
    """[MQTT-1.1.1-1]"""


# [MQTT-3.3.1-4] in the comment above the test
def test_one(broker):
    """Docstring [MQTT-3.3.1-5]."""
    assert x, "[MQTT-3.1.2-24] (3.1.1)"


class Suite:
    def test_two(self):
        pass
'''


def test_python_citations_and_the_311_marker():
    tests = {name: cites for name, _, cites in generate.python_tests(Path("t.py"), PYTHON)}
    assert set(tests) == {"test_one", "test_two"}
    assert tests["test_one"] == [("3.3.1-4", ""), ("3.3.1-5", ""), ("3.1.2-24", " (3.1.1)")]
    assert tests["test_two"] == []


JS = """
describe('x', () => {
  it('keeps retained [MQTT-3.3.1-5]', async () => {
    assert.ok(true, '[MQTT-3.3.1-6]');
  });

  it('plain', async () => {
  });
});
"""


def test_js_cases_drop_ids_from_their_titles():
    tests = list(generate.js_tests(Path("t.mjs"), JS))
    assert [(name, [c[0] for c in cites]) for name, _, cites in tests] == [
        ("keeps retained", ["3.3.1-5", "3.3.1-6"]),
        ("plain", []),
    ]


def test_a_statement_that_loses_its_last_test_is_detected():
    before = "## MQTT 5.0\n| **MQTT-3.1.0-2** text | tested | [`t`](a.rs#L1) |\n| **MQTT-3.1.0-1** t | neither | – |\n"
    after = before.replace("| tested | [`t`](a.rs#L1)", "| neither | –")
    assert generate.tested_in(before) - generate.tested_in(after) == {("5.0", "MQTT-3.1.0-2")}
    assert generate.tested_in(after) - generate.tested_in(before) == set()


def test_the_committed_lists_parse_and_have_no_duplicates():
    for path in generate.STATEMENT_FILES.values():
        statements = generate.read_statements(path)
        assert len(statements) > 100
        assert all(ident.startswith("MQTT-") and text for ident, text in statements.items())


def test_simulator_checkers_count_every_function():
    checker = "/// [MQTT-3.3.4-9]\npub fn receive_maximum(x: u8) {\n    assert!(x > 0, \"[MQTT-3.8.4-8]\");\n}\n"
    assert list(generate.rust_tests(Path("x.rs"), checker)) == []
    found = list(generate.rust_tests(Path("x.rs"), checker, all_functions=True))
    assert [(name, [c[0] for c in cites]) for name, _, cites in found] == [
        ("receive_maximum", ["3.3.4-9", "3.8.4-8"])
    ]
