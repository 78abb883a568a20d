"""The deterministic Raft simulation (vfsd.sim.raft): a sweep of seeds, replay, proof
that its checks catch broken cores, the election bound, and ``vfsd sim raft``.

More seeds: ``python -m vfsd sim raft --seeds 5000`` (a failure prints its one-line repro).
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from tests.conftest import vfsd_command
from vfsd.cli import main
from vfsd.raft import RaftSettings, memlog
from vfsd.raft import core as core_module
from vfsd.sim import raft as sim
from vfsd.sim.raft import RaftSimulation, SimConfig, SimFailure, measure_failover, run_seed

SUITE_SEEDS = 200
SUITE_STEPS = 1500
CHUNK = 25


@pytest.mark.parametrize("first", range(0, SUITE_SEEDS, CHUNK))
def test_seeds_keep_every_invariant_and_recover_after_healing(first: int) -> None:
    for seed in range(first, first + CHUNK):
        try:
            report = run_seed(seed, steps=SUITE_STEPS)
        except SimFailure as failure:
            pytest.fail(str(failure), pytrace=False)
        assert report.committed > 0 and report.terms_led > 0


def test_a_seed_replays_step_for_step() -> None:
    def run() -> tuple[object, list[object]]:
        simulation = RaftSimulation(SimConfig(42, steps=800))
        report = simulation.run()
        return report, [(o.client, o.op, o.args, o.result, o.call, o.ret) for o in simulation.history.operations()]

    assert run() == run()


def _first_failure(seeds: range) -> SimFailure:
    for seed in seeds:
        try:
            run_seed(seed, steps=SUITE_STEPS)
        except SimFailure as failure:
            return failure
    raise AssertionError(f"no seed in {seeds} caught the broken core")


def test_it_catches_a_core_that_votes_for_out_of_date_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the election restriction (§5.4.1) a leader can lack committed entries."""
    monkeypatch.setattr(memlog.RaftLog, "is_up_to_date", lambda self, last_index, last_term: True)
    failure = _first_failure(range(40))
    assert any(what in failure.what for what in ("leader completeness", "state-machine safety", "log matching"))
    assert str(failure).endswith(failure.config.reproduce())


def test_it_catches_a_leader_that_serves_reads_without_a_quorum_round(monkeypatch: pytest.MonkeyPatch) -> None:
    def serve_at_once(self: core_module.RaftCore, context: bytes, origin: str) -> None:
        self._release(core_module.PendingRead(context, origin, self.log.commit, 0))

    monkeypatch.setattr(core_module.RaftCore, "_leader_read", serve_at_once)
    failure = _first_failure(range(40))
    assert "read released" in failure.what or "not linearizable" in failure.what


def test_a_failure_names_the_seed_and_the_command_that_reproduces_it() -> None:
    config = SimConfig(77, voters=4, steps=900)
    failure = SimFailure(config, "something broke", ["  10 ms deliver ..."])
    assert str(failure).splitlines()[-1] == "reproduce: python -m vfsd sim raft --seed 77 --nodes 4 --steps 900"
    assert SimConfig(5).reproduce() == "reproduce: python -m vfsd sim raft --seed 5"


def test_failover_takes_about_one_randomised_election_timeout() -> None:
    """With default timing a crashed leader is replaced once a follower's randomised
    timeout ([E, 2E) ticks after the last heartbeat) expires, plus a round trip; when
    both survivors time out together the vote splits and it takes one timeout more
    (twice in a row is rare: at most one seed of the 20).
    The next write commits within two ticks of the new leader (its first append probes,
    the write follows the answer; times are whole ticks, rounded down)."""
    e = RaftSettings().election_ticks
    failovers = []
    for seed in range(20):
        m = measure_failover(seed)
        assert e - 1 <= m.failover_ticks <= 6 * e
        assert m.failover_ticks <= m.failover_commit_ticks <= m.failover_ticks + 2
        assert m.first_leader_ticks <= 4 * e
        failovers.append(m.failover_ticks)
    assert sorted(failovers)[len(failovers) // 2] < 2 * e
    assert sum(f > 4 * e for f in failovers) <= 1, failovers


def test_vfsd_sim_raft_runs_seeds_and_reports(tmp_path: object) -> None:
    result = CliRunner().invoke(main, ["sim", "raft", "--seed", "3", "--steps", "400"])
    assert result.exit_code == 0, result.output
    assert "raft: 1 seeds, 0 failed" in result.output and "steps/s" in result.output


def test_vfsd_sim_raft_prints_the_repro_line_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(seed: int, **kwargs: object) -> object:
        if seed == 4:
            raise SimFailure(SimConfig(seed), "election safety: two leaders", [])
        return sim.SimReport(seed, 3, 0, steps=1)

    monkeypatch.setattr(sim, "run_seed", broken)
    monkeypatch.setattr(sim, "measure_failover", lambda seed, voters=3: sim.FailoverMeasure(10, 12, 13))
    result = CliRunner().invoke(main, ["sim", "raft", "--seed", "2", "--seeds", "5"])
    assert result.exit_code == 1
    assert "reproduce: python -m vfsd sim raft --seed 4" in result.output
    assert "raft: 5 seeds, 1 failed" in result.output


def test_python_m_vfsd_sim_raft_as_a_process() -> None:
    done = subprocess.run([*vfsd_command(), "sim", "raft", "--seed", "1", "--steps", "300", "--nodes", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "raft: 1 seeds, 0 failed" in done.stdout


def test_it_catches_a_lease_granted_while_another_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease check has teeth: a state machine that grants a held lease is caught."""
    real = RaftSimulation._apply_lease

    def grant_anyway(self: RaftSimulation, proc: object, e: object, op: list, first: bool) -> object:
        if op[0] == "lock":
            slot = "lease:" + op[1]
            proc.kv.pop(slot, None)  # type: ignore[attr-defined]
        return real(self, proc, e, op, first)

    monkeypatch.setattr(RaftSimulation, "_apply_lease", grant_anyway)
    failure = _first_failure(range(40))
    assert "lease safety" in failure.what
