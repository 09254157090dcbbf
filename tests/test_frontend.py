"""The front end: every bad spec in the catalogue fails with its exact location and message, and no
input, however malformed, escapes as anything but a CombinerError."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import combiner_dsl
from combiner_dsl import CombinerError, load

HERE = Path(__file__).parent
EXAMPLES = sorted((HERE.parent / "examples").rglob("*.cmb"))

# file -> (LINE:COL, message) of the first diagnostic
CATALOGUE = {
    "tab": ("2:1", 'tab character'),
    "unclosed": ("3:13", "unclosed '('"),
    "missing_operand": ("3:16", 'unexpected end of line'),
    "bad_char": ("3:15", "unexpected character '$'"),
    "no_mode": ("1:9", 'pattern `p` has no mode'),
    "two_modes": ("3:5", 'a second mode line'),
    "no_direct": ("1:9", 'the pattern has no `direct` line'),
    "two_direct": ("4:5", 'a second `direct` line in the pattern'),
    "i_in_member": ("5:28", '`i` cannot be used in `member`'),
    "j_in_select": ("6:17", '`j` cannot be used in `select`'),
    "i_in_let": ("3:13", '`i` cannot be used in a `let`'),
    "j_in_bounds": ("4:27", '`j` cannot be used in binder bounds'),
    "unknown_name": ("3:18", 'unknown name `t`'),
    "unknown_function": ("3:18", 'unknown function `sqrt`'),
    "arity": ("3:18", '`cdiv` takes 2 arguments, found 1'),
    "type_direct_int": ("3:13", 'expected a condition (true/false) in `direct`, found an integer'),
    "type_compare_bool": ("3:14", '`<` compares integers, found a condition'),
    "type_and_int": ("3:13", 'expected a condition (true/false) in `direct`, found an integer'),
    "reserved_let": ("3:9", '`L` is reserved'),
    "keyword_let": ("3:9", '`select` is a keyword'),
    "dup_let": ("4:9", 'duplicate name `s`'),
    "dup_partition": ("6:15", 'duplicate name `b`'),
    "dup_binder": ("4:30", 'duplicate name `r`'),
    "no_member": ("4:15", 'partition `b` has no `member` line'),
    "plan_without_mix": ("3:5", 'plans without `mix`'),
    "mix_without_plans": ("4:10", '`mix` without plans'),
    "single_plan": ("3:10", 'a single `plan` block'),
    "direct_outside_plan": ("3:5", '`direct` outside a plan'),
    "bad_pool": ("6:18", 'unknown summary `median`'),
    "bad_mix": ("7:10", 'unknown mix `sometimes`'),
    "bad_dedent": ("6:7", 'indentation does not match any outer block'),
    "j_in_at": ("6:29", '`j` cannot be used in `at(...)`'),
    "eof": ("1:11", 'unexpected end of file'),
    "two_patterns": ("4:1", 'a second pattern'),
    "function_as_name": ("3:18", '`max` is a function'),
}


def test_catalogue_is_complete() -> None:
    assert sorted(p.stem for p in (HERE / "bad_specs").glob("*.cmb")) == sorted(CATALOGUE)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_bad_spec_location_and_message(name: str) -> None:
    path = HERE / "bad_specs" / f"{name}.cmb"
    with pytest.raises(CombinerError) as info:
        load(path)
    first = info.value.diagnostics[0]
    where, message = CATALOGUE[name]
    assert first.location == f"{path}:{where}"
    assert first.message == message
    rendered = str(info.value)
    assert rendered.startswith(f"{path}:{where}: {message}")
    assert "^" in rendered.splitlines()[2]  # the caret line under the source line


def test_cli_reports_every_bad_spec_with_exit_2() -> None:
    paths = [str(HERE / "bad_specs" / f"{n}.cmb") for n in sorted(CATALOGUE)]
    run = subprocess.run([sys.executable, "-m", "combiner_dsl.cli", "check", "--no-prove", *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    for name, (where, message) in CATALOGUE.items():
        assert f"{name}.cmb:{where}: {message}" in run.stderr


def test_independent_semantic_errors_are_reported_together() -> None:
    text = "pattern p:\n    causal\n    let s = i\n    direct: j + 1\n    partition b[r in 0 .. L]:\n        member: j == r and i > 0\n"
    with pytest.raises(combiner_dsl.SpecSemanticError) as info:
        load(text=text, name="many.cmb")
    locations = [d.location for d in info.value.diagnostics]
    assert locations == ["many.cmb:3:13", "many.cmb:4:13", "many.cmb:6:28"]


def test_caret_sits_under_the_culprit() -> None:
    with pytest.raises(CombinerError) as info:
        load(text="pattern p:\n    causal\n    direct: j // t == i\n", name="x.cmb")
    lines = str(info.value).splitlines()
    assert lines[1] == "        direct: j // t == i"
    assert lines[2] == "                     ^"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_parse(path: Path) -> None:
    assert load(path).name == path.stem


# ---------------------------------------------------------------- fuzzing

LOCATED = re.compile(r"fuzz\.cmb:\d+:\d+: ")


def _load_text(text: str) -> None:
    """Load `text`; a CombinerError must name its place as fuzz.cmb:LINE:COL, anything else fails the test."""
    message = None
    try:
        load(text=text, name="fuzz.cmb")
    except CombinerError as err:
        message = str(err)
    assert message is None or LOCATED.match(message), f"an error without its location: {message[:300]!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_only_raises_combiner_error(text: str) -> None:
    _load_text(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_combiner_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "garbage.cmb"
    path.write_bytes(data)
    try:
        load(path)
    except CombinerError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EXAMPLES), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 6), st.sampled_from([*list(" \n\t()[]:=#,.-+*/%<>!abcijLrs0123456789"), "and", "or", "not", "partition", "    ", "member:"])), min_size=1, max_size=6))
def test_mutated_examples_only_raise_combiner_error(path: Path, edits: list[tuple[int, int, str]]) -> None:
    text = path.read_text()
    for pos, cut, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + insert + text[pos + cut :]
    _load_text(text)


@pytest.mark.slow
def test_huge_and_deep_inputs_fail_cleanly() -> None:
    head = "pattern p:\n    causal\n    direct: "
    for body in ("(" * 5000 + "j" + ")" * 5000, "not " * 20000 + "true", "-" * 50000 + "1 == j", "j" + " + 1" * 250_000 + " == i"):
        with pytest.raises(CombinerError):
            load(text=head + body + "\n", name="deep.cmb")
    _load_text("x" * 1_000_000)
    _load_text("pattern p:\n" + "    " * 1000 + "causal\n")


def test_seeded_token_soup_prints_its_seed() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tokens = ["pattern", "p", ":", "\n", "    ", "causal", "direct", "j", "i", "==", "//", "(", ")", "partition", "[", "]", "in", "..", "member", "select", "summary", "max", "at", ",", "let", "=", "L", "1"]
    for _ in range(200):
        text = " ".join(rng.choice(tokens) for _ in range(rng.randrange(1, 40)))
        try:
            load(text=text, name="soup.cmb")
        except CombinerError:
            pass
        except Exception as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"seed {seed}: {type(err).__name__} on {text!r}")
