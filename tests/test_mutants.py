"""tools.mutants: counting cosmic-ray's outcomes, and telling annotation mutants (never evaluated) from survivors."""

import json

import pytest

from tools import mutants

SOURCE = '''from __future__ import annotations


def f(x: int | None) -> int | None:
    y: dict[str, int] = {}
    return x | 1
'''


def dumped(line, column, worker="normal", test="survived"):
    item = {"mutations": [{"start_pos": [line, column], "end_pos": [line, column + 1],
                           "operator_name": "core/ReplaceBinaryOperator_BitOr_Add", "occurrence": 0}]}
    return json.dumps([item, {"worker_outcome": worker, "test_outcome": test}])


def test_survivors_inside_annotations_are_equivalent_and_the_others_listed():
    lines = [dumped(4, 12), dumped(4, 26), dumped(5, 12), dumped(6, 13), dumped(6, 13, test="killed"),
             dumped(6, 13, worker="timeout", test=None), json.dumps([{"mutations": []}, None])]
    entry = mutants.summarise("m.py", ("tests/t.py",), "\n".join(lines), 1.0, 10.0, SOURCE)
    assert (entry["mutants"], entry["killed"], entry["timed_out"], entry["equivalent_annotation"], entry["survived"]) == (
        6, 1, 1, 3, 1)
    assert entry["survivors"] == [{"line": 6, "operator": "core/ReplaceBinaryOperator_BitOr_Add", "occurrence": 0}]
    assert entry["kill_rate"] == 2 / 3, "killed and timed out over the mutants that are not equivalent"
    known = {"m.py": [{"line": 6, "operator": "core/ReplaceBinaryOperator_BitOr_Add", "occurrence": 0, "reason": "x"}]}
    listed = mutants.summarise("m.py", ("tests/t.py",), "\n".join(lines), 1.0, 10.0, SOURCE, known)
    assert (listed["survived"], listed["equivalent_known"], listed["survivors"], listed["kill_rate"]) == (0, 1, [], 1.0)


def test_every_equivalent_listed_by_hand_gives_its_reason():
    listed = json.loads(mutants.EQUIVALENT.read_text())
    for module, entries in listed.items():
        if module == "about":
            continue
        assert module in mutants.MODULE_TESTS
        assert all(set(e) == {"line", "operator", "occurrence", "reason"} and e["reason"] for e in entries), module


def test_every_stage_module_named_has_tests_that_exist():
    for module, tests in mutants.MODULE_TESTS.items():
        assert (mutants.REPO_DIR / module).is_file(), module
        assert tests and all((mutants.REPO_DIR / test).is_file() for test in tests), module


def test_survivors_are_retested_only_against_the_module_they_were_made_of(tmp_path, monkeypatch):
    monkeypatch.setattr(mutants, "WORK_DIR", tmp_path)
    tree = mutants.tree_of("serd/smoothing.py")
    with pytest.raises(RuntimeError, match="no session to retest in"):
        mutants.retest_module("serd/smoothing.py")
    (tree / "serd").mkdir(parents=True)
    (tree / "session.sqlite").write_bytes(b"")
    (tree / "serd" / "smoothing.py").write_text((mutants.REPO_DIR / "serd" / "smoothing.py").read_text() + "\n# changed\n")
    with pytest.raises(RuntimeError, match="^serd/smoothing.py changed since its session was made; run it again in full$"):
        mutants.retest_module("serd/smoothing.py")
