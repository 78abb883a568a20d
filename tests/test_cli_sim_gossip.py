"""``vfsd sim gossip``: the simulation from the command line (in-process, through click)."""

from __future__ import annotations

from click.testing import CliRunner

from vfsd.cli import main


def test_a_few_seeds_run_and_report_convergence() -> None:
    result = CliRunner().invoke(main, ["sim", "gossip", "--seed", "11", "--seeds", "3", "--nodes", "3-4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["seed 11", "seed 12", "seed 13"]
    assert all(": ok: converged after" in line for line in lines[:3])
    assert lines[-1] == "3 of 3 seeds converged safely"


def test_one_seed_reproduces_the_same_run() -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["sim", "gossip", "--seed", "42", "--nodes", "4"])
    again = runner.invoke(main, ["sim", "gossip", "--seed", "42", "--nodes", "4"])
    assert first.exit_code == again.exit_code == 0
    assert first.output == again.output


def test_bad_options_are_refused_with_the_reason() -> None:
    result = CliRunner().invoke(main, ["sim", "gossip", "--nodes", "1-x"])
    assert result.exit_code == 2 and "expected N or N-M" in result.output
    result = CliRunner().invoke(main, ["sim", "gossip", "--nodes", "60"])
    assert result.exit_code == 2 and "from 2 to 50" in result.output


def test_the_scaling_run_prints_update_failure_and_the_model() -> None:
    result = CliRunner().invoke(main, ["sim", "gossip", "--scale", "50"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "one update" in text and "failure detected" in text and "model: 99.99%" in text
    assert text.count("(100.00% reached)") == 3


def test_the_write_path_cost_is_measured() -> None:
    result = CliRunner().invoke(main, ["sim", "gossip", "--cost"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4 and all(line.count("µs") == 1 for line in lines)
