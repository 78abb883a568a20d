"""The ``vfsd`` command: ``vfsd serve`` runs a node; the rest are small clients of one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import click

from vfsd import __version__
from vfsd.config import ConfigError, load


def _env(name: str) -> str:
    return "VFSD_" + name.upper()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vfsd")
def main() -> None:
    """vfsd: a distributed virtual file system of cluster state that speaks Redis."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VFSD_CONFIG", show_envvar=True,
              help="TOML file (see conf/vfsd.toml); settings in it sit below environment and flags.")
@click.option("--node-id", envvar=_env("node_id"), show_envvar=True, help="Node name [default: host name].")
@click.option("--bind", envvar=_env("bind"), show_envvar=True, help="Client address [default: 127.0.0.1].")
@click.option("--port", type=int, envvar=_env("port"), show_envvar=True, help="Client port [default: 6379].")
@click.option("--peer-port", type=int, envvar=_env("peer_port"), show_envvar=True,
              help="Peer port [default: port + 10000].")
@click.option("--data-dir", envvar=_env("data_dir"), show_envvar=True,
              help="Durable state directory [default: ./vfsd-data/<node-id>].")
@click.option("--peers", envvar=_env("peers"), show_envvar=True,
              help="Initial cluster, id=host:peerport,... (the same on every voter) [default: a one-voter cluster].")
@click.option("--join", envvar=_env("join"), show_envvar=True,
              help="host:peerport of a member of an existing cluster, to join it as a learner.")
@click.option("--seeds", envvar=_env("seeds"), show_envvar=True,
              help="host:peerport,... of gossip members to join through (--peers and --join are seeds too).")
@click.option("--gossip-profile", type=click.Choice(["lan", "local", "wan"], case_sensitive=False),
              envvar=_env("gossip_profile"), show_envvar=True,
              help="Gossip timing: lan, local (loopback, tests) or wan [default: lan].")
@click.option("--requirepass", envvar=_env("requirepass"), show_envvar=True, help="Password clients AUTH with.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              envvar=_env("log_level"), show_envvar=True, help="Log level [default: info].")
@click.option("--collectors/--no-collectors", default=None, envvar="VFSD_COLLECTORS", show_envvar=True,
              help="Run the Props/Status collectors that keep /hw and /sum current [default: on].")
def serve(config_path: str | None, collectors: bool | None, **flags: Any) -> None:
    """Run a vfsd node in the foreground until SIGINT or SIGTERM."""
    if collectors is not None:  # the collectors read VFSD_COLLECTORS, above the [collectors] table
        os.environ["VFSD_COLLECTORS"] = "on" if collectors else "off"
    try:
        config = load(config_path, overrides=flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from vfsd.node import Node, StartupError

    async def run() -> None:
        node = Node(config)
        try:
            await node.start()
        except StartupError as exc:
            raise click.ClickException(str(exc)) from None
        stop = node.shutdown_requested  # SHUTDOWN sets it too
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await node.stop(save=node.shutdown_save)

    runner_kwargs: dict[str, Any] = {}
    try:
        import uvloop

        runner_kwargs["loop_factory"] = uvloop.new_event_loop
    except ImportError:  # uvloop is Linux/macOS only; asyncio's loop works everywhere
        pass
    with asyncio.Runner(**runner_kwargs) as runner:
        runner.run(run())


@main.group()
def sim() -> None:
    """Deterministic simulations of vfsd's cores; a failing seed prints how to reproduce it."""


@sim.command("raft")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="How many seeds to run [default: 100].")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="The (first) seed [default: 0].")
@click.option("--nodes", type=click.IntRange(1, 9), default=None, help="Voters [default: 3-5, drawn per seed].")
@click.option("--steps", type=click.IntRange(min=0), default=None, help="Events in the fault phase [default: 3000].")
def sim_raft(seeds: int | None, seed: int | None, nodes: int | None, steps: int | None) -> None:
    """Run the Raft simulation on seeds SEED .. SEED + SEEDS - 1; exit 1 if any fails."""
    import time

    from vfsd.sim.raft import DEFAULT_STEPS, SimFailure, failover_summary, measure_failover, run_seed

    first = seed or 0
    count = seeds if seeds is not None else (1 if seed is not None else 100)
    failed = total_steps = 0
    started = time.perf_counter()
    for s in range(first, first + count):
        try:
            total_steps += run_seed(s, voters=nodes, steps=DEFAULT_STEPS if steps is None else steps).steps
        except SimFailure as exc:
            failed += 1
            click.echo(str(exc) if failed == 1 else f"seed {s}: {exc.what.splitlines()[0]}\n{exc.config.reproduce()}",
                       err=True)
    elapsed = max(time.perf_counter() - started, 1e-9)
    click.echo(f"raft: {count} seeds, {failed} failed; {total_steps} steps in {elapsed:.1f} s "
               f"({total_steps / elapsed:,.0f} steps/s, {count / elapsed:.1f} seeds/s)")
    if count > 1:
        voters = max(nodes or 3, 3)  # failover needs a majority left after the leader crashes
        click.echo(failover_summary([measure_failover(s, voters=voters) for s in range(first, first + min(count, 50))]))
    if failed:
        raise SystemExit(1)


# -- small clients --------------------------------------------------------------

def _client_options(f: Any) -> Any:
    f = click.option("--host", "-H", default="127.0.0.1", envvar="VFSD_HOST", show_envvar=True, show_default=True,
                     help="Address of the vfsd node to talk to.")(f)
    f = click.option("--port", "-p", type=click.IntRange(1, 65535), default=6379, envvar="VFSD_PORT",
                     show_envvar=True, show_default=True, help="Its client (Redis protocol) port.")(f)
    f = click.option("--password", "-a", envvar="VFSD_PASSWORD", show_envvar=True, default=None,
                     help="Password, when the node has requirepass set.")(f)
    return f


def _connect(host: str, port: int, password: str | None) -> Any:
    import redis

    return redis.Redis(host=host, port=port, password=password, socket_timeout=30)


def _call(fn: Any) -> Any:
    import redis

    try:
        return fn()
    except redis.AuthenticationError as exc:  # before ConnectionError: it is one
        raise click.ClickException(f"authentication failed: {exc} (give the password with -a or VFSD_PASSWORD)") \
            from None
    except redis.ResponseError as exc:
        raise click.ClickException(str(exc)) from None
    except redis.ConnectionError as exc:
        raise click.ClickException(f"cannot reach vfsd: {exc}") from None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _write_value(value: bytes) -> None:
    """A file's bytes exactly as stored, then a newline (binary values are not text)."""
    out = click.get_binary_stream("stdout")
    out.write(value + b"\n")
    out.flush()


@main.command()
@_client_options
@click.argument("directory", default="/")
def ls(host: str, port: int, password: str | None, directory: str) -> None:
    """List a directory's children (subdirectories end in '/')."""
    r = _connect(host, port, password)
    names = _call(lambda: r.execute_command("VFS.LS", directory))
    if not names and directory.rstrip("/"):
        path = directory.rstrip("/")
        if _call(lambda: r.exists(path)):
            raise click.ClickException(f"{path}: not a directory (it is a file)")
        raise click.ClickException(f"{directory}: no such directory")
    for name in names:
        click.echo(_text(name))


@main.command()
@_client_options
@click.argument("path")
def get(host: str, port: int, password: str | None, path: str) -> None:
    """Print a file's value (its exact bytes; a document as JSON text)."""
    r = _connect(host, port, password)
    value = _call(lambda: r.get(path))
    if value is None:
        raise click.ClickException(f"{path}: no such file")
    _write_value(value)


@main.command("set")
@_client_options
@click.option("--json", "as_json", is_flag=True, help="Store VALUE as a structured document (JSON.SET).")
@click.argument("path")
@click.argument("value")
def set_(host: str, port: int, password: str | None, as_json: bool, path: str, value: str) -> None:
    """Write a file."""
    r = _connect(host, port, password)
    if as_json:
        _call(lambda: r.execute_command("JSON.SET", path, "$", value))
    else:
        _call(lambda: r.set(path, value))


@main.command("del")
@_client_options
@click.argument("paths", nargs=-1, required=True)
def del_(host: str, port: int, password: str | None, paths: tuple[str, ...]) -> None:
    """Delete files; fails if none of them existed."""
    r = _connect(host, port, password)
    # One DEL per path: a single DEL may not span planes.
    removed = sum(_call(lambda p=path: r.delete(p)) for path in paths)
    if not removed:
        raise click.ClickException(f"{' '.join(paths)}: no such file")
    click.echo(removed)


@main.command()
@_client_options
@click.argument("path")
def stat(host: str, port: int, password: str | None, path: str) -> None:
    """Print a file's metadata as JSON."""
    r = _connect(host, port, password)
    reply = _call(lambda: r.execute_command("VFS.STAT", path))
    if reply is None:
        raise click.ClickException(f"{path}: no such file")
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2]))
    reply = {_text(k): _text(v) if isinstance(v, bytes) else v for k, v in reply.items()}
    click.echo(json.dumps(reply, indent=2))


@main.command()
@_client_options
@click.argument("pattern", default="/*")
def watch(host: str, port: int, password: str | None, pattern: str) -> None:
    """Print every change under PATTERN (a glob such as '/ctx/*') as a JSON line."""
    r = _connect(host, port, password)
    r.connection_pool.connection_kwargs["socket_timeout"] = None  # a watch waits as long as it must
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    _call(lambda: pubsub.psubscribe("__vfs__:" + pattern))
    def listen() -> None:
        for message in pubsub.listen():
            click.echo(_text(message["data"]))

    try:
        _call(listen)
    except KeyboardInterrupt:
        pass


# -- simulations (the group is declared above, beside sim raft) ---------------------

def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        span = (int(low), int(high or low))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected N or N-M") from None
    if not 2 <= span[0] <= span[1] <= 50:
        raise click.BadParameter(f"{text!r}: cluster sizes run from 2 to 50 nodes")
    return span


@sim.command("gossip")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed (alone: reproduce that run).")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True, help="How many seeds to run.")
@click.option("--nodes", default="3-5", show_default=True, help="Cluster size, or a range drawn per seed.")
@click.option("--safety-ms", type=click.IntRange(1000), default=4000, show_default=True,
              help="Simulated time of the fault phase before healing.")
@click.option("--scale", type=click.IntRange(2), multiple=True,
              help="Instead: the scaling run (one update, one failure) at this many nodes; repeatable.")
@click.option("--cost", is_flag=True, help="Instead: what replication adds to one write, measured here.")
def sim_gossip(seed: int, seeds: int, nodes: str, safety_ms: int, scale: tuple[int, ...], cost: bool) -> None:
    """Active-plane gossip: faults, then heal and require convergence (or --scale N, --cost)."""
    from vfsd.sim import gossip as simulation

    if cost:
        from vfsd.sim.gossip_cost import report

        for line in report():
            click.echo(line)
        return
    if scale:
        for n in scale:
            for line in simulation.scaling_report(n, seed or 1):
                click.echo(line)
        return
    span, failed = _span(nodes), 0
    for s in range(seed, seed + seeds):
        result = simulation.run_random(s, nodes=span, safety_ms=safety_ms)
        failed += not result.ok
        if not result.ok or seeds <= 20:
            click.echo(result.summary())
    if seeds > 1:
        click.echo(f"{seeds - failed} of {seeds} seeds converged safely")
    if failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()


@main.group()
def cluster() -> None:
    """Run a local cluster."""


@cluster.command("up")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, help="How many voters.")
@click.option("--data-dir", type=click.Path(file_okay=False), default="vfsd-cluster", show_default=True,
              help="Where each node's data and log go (one subdirectory per node).")
def cluster_up(nodes: int, data_dir: str) -> None:
    """Start NODES vfsd processes as one cluster on free loopback ports; Ctrl-C stops them all."""
    from pathlib import Path

    from vfsd.localcluster import run

    try:
        code = run(Path(data_dir).resolve(), nodes, click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option("--endpoints", envvar="VFSD_ENDPOINTS", show_envvar=True, default="127.0.0.1:6379", show_default=True,
              help="host:port,... of the nodes to ask.")
@click.option("--password", "-a", envvar="VFSD_PASSWORD", show_envvar=True, default=None, help="Password to AUTH with.")
def status(endpoints: str, password: str | None) -> None:
    """Each node's view of the desired plane's Raft group, as a table (like etcdctl endpoint status)."""
    import redis

    from vfsd.localcluster import parse_endpoints, status_row, table

    try:
        targets = parse_endpoints(endpoints)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--endpoints") from None
    rows = []
    failed = 0
    for host, port in targets:
        endpoint = f"{host}:{port}"
        try:
            with redis.Redis(host=host, port=port, password=password, socket_timeout=3, socket_connect_timeout=3) as r:
                rows.append(status_row(endpoint, r.info("raft")))
        except redis.RedisError as exc:
            failed += 1
            rows.append(status_row(endpoint, None, str(exc)))
    click.echo(table(rows))
    if failed:
        sys.exit(1)
