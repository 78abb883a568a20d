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
    from vfsd.node import Node

    async def run() -> None:
        node = Node(config)
        try:
            await node.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {node.config.bind}:{node.config.port}: {exc.strerror}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await node.stop()

    runner_kwargs: dict[str, Any] = {}
    try:
        import uvloop

        runner_kwargs["loop_factory"] = uvloop.new_event_loop
    except ImportError:  # uvloop is Linux/macOS only; asyncio's loop works everywhere
        pass
    with asyncio.Runner(**runner_kwargs) as runner:
        runner.run(run())


# -- small clients --------------------------------------------------------------

def _client_options(f: Any) -> Any:
    f = click.option("--host", "-H", default="127.0.0.1", envvar="VFSD_HOST", show_default=True)(f)
    f = click.option("--port", "-p", type=int, default=6379, envvar="VFSD_PORT", show_default=True)(f)
    f = click.option("--password", "-a", envvar="VFSD_PASSWORD", default=None)(f)
    return f


def _connect(host: str, port: int, password: str | None) -> Any:
    import redis

    return redis.Redis(host=host, port=port, password=password, decode_responses=True)


def _call(fn: Any) -> Any:
    import redis

    try:
        return fn()
    except redis.ResponseError as exc:
        raise click.ClickException(str(exc)) from None
    except redis.ConnectionError as exc:
        raise click.ClickException(f"cannot reach vfsd: {exc}") from None


@main.command()
@_client_options
@click.argument("directory", default="/")
def ls(host: str, port: int, password: str | None, directory: str) -> None:
    """List a directory's children (subdirectories end in '/')."""
    r = _connect(host, port, password)
    for name in _call(lambda: r.execute_command("VFS.LS", directory)):
        click.echo(name)


@main.command()
@_client_options
@click.argument("path")
def get(host: str, port: int, password: str | None, path: str) -> None:
    """Print a file's value."""
    r = _connect(host, port, password)
    value = _call(lambda: r.get(path))
    if value is None:
        raise click.ClickException(f"{path}: no such file")
    click.echo(value)


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
    click.echo(json.dumps(reply, indent=2))


@main.command()
@_client_options
@click.argument("pattern", default="/*")
def watch(host: str, port: int, password: str | None, pattern: str) -> None:
    """Print every change under PATTERN (a glob such as '/ctx/*') as a JSON line."""
    r = _connect(host, port, password)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    _call(lambda: pubsub.psubscribe("__vfs__:" + pattern))
    try:
        for message in pubsub.listen():
            click.echo(message["data"])
    except KeyboardInterrupt:
        pass


# -- simulations -------------------------------------------------------------------

@main.group()
def sim() -> None:
    """Deterministic simulations of the replication cores: a seed is a whole run, repeatable."""


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
