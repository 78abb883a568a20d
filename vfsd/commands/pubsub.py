"""Pub/sub commands. Replies to (un)subscribe are pushes, one per channel, as Redis sends them.

Shard channels (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS|SHARDNUMSUB) behave as in a
Redis cluster of one shard: a namespace of their own (SPUBLISH reaches only SSUBSCRIBErs, and no
pattern), and their replies count shard subscriptions apart from the others, as Redis 7 does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfsd.commands.table import command, container
from vfsd.glob import compile_glob
from vfsd.resp.types import Push

if TYPE_CHECKING:
    from vfsd.server import Client


class Replies(list):  # type: ignore[type-arg]
    """Several replies for one command (one per channel); the encoder writes them back to back."""


def _subscribe(client: "Client", channels: list[bytes], kind: bytes, pattern: bool) -> Replies:
    pubsub = client.node.pubsub
    held = client.patterns if pattern else client.channels
    out = Replies()
    for channel in channels:
        (pubsub.psubscribe if pattern else pubsub.subscribe)(client, channel)
        held.add(channel)
        client.subscribed = True
        out.append(Push([kind, channel, client.pubsub_count()]))
    return out


def _unsubscribe(client: "Client", channels: list[bytes], kind: bytes, pattern: bool) -> Replies:
    pubsub = client.node.pubsub
    held = client.patterns if pattern else client.channels
    targets = channels or sorted(held)
    if not targets:
        return Replies([Push([kind, None, client.pubsub_count()])])
    out = Replies()
    for channel in targets:
        (pubsub.punsubscribe if pattern else pubsub.unsubscribe)(client, channel)
        held.discard(channel)
        client.subscribed = bool(client.subscriptions())
        out.append(Push([kind, channel, client.pubsub_count()]))
    return out


@command("subscribe", arity=-2, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="pubsub",
         scope="node", summary="Listens for messages published to channels.", arguments="channel [channel ...]")
def subscribe(client: "Client", argv: list[bytes]) -> Replies:
    return _subscribe(client, argv[1:], b"subscribe", pattern=False)


@command("psubscribe", arity=-2, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="pubsub",
         scope="node", summary="Listens for messages published to channels that match one or more patterns.",
         arguments="pattern [pattern ...]")
def psubscribe(client: "Client", argv: list[bytes]) -> Replies:
    return _subscribe(client, argv[1:], b"psubscribe", pattern=True)


@command("unsubscribe", arity=-1, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="pubsub",
         scope="node", summary="Stops listening to messages posted to channels.", arguments="[channel ...]")
def unsubscribe(client: "Client", argv: list[bytes]) -> Replies:
    return _unsubscribe(client, argv[1:], b"unsubscribe", pattern=False)


@command("punsubscribe", arity=-1, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="pubsub",
         scope="node", summary="Stops listening to messages published to channels that match one or more patterns.",
         arguments="[pattern ...]")
def punsubscribe(client: "Client", argv: list[bytes]) -> Replies:
    return _unsubscribe(client, argv[1:], b"punsubscribe", pattern=True)


@command("publish", arity=3, flags="pubsub loading stale fast may_replicate", acl="@pubsub", group="pubsub", scope="node",
         summary="Posts a message to a channel.", arguments="channel message")
def publish(client: "Client", argv: list[bytes]) -> int:
    return client.node.pubsub.publish(argv[1], argv[2])


# -- shard channels ----------------------------------------------------------------


@command("ssubscribe", arity=-2, flags="pubsub noscript loading stale no_multi", keys=(1, -1, 1), acl="@pubsub",
         group="pubsub", scope="node", since="7.0.0", summary="Listens for messages published to shard channels.",
         arguments="shardchannel [shardchannel ...]")
def ssubscribe(client: "Client", argv: list[bytes]) -> Replies:
    pubsub = client.node.pubsub
    out = Replies()
    for channel in argv[1:]:
        pubsub.ssubscribe(client, channel)
        client.shard_channels.add(channel)
        client.subscribed = True
        out.append(Push([b"ssubscribe", channel, len(client.shard_channels)]))
    return out


@command("sunsubscribe", arity=-1, flags="pubsub noscript loading stale no_multi", keys=(1, -1, 1), acl="@pubsub",
         group="pubsub", scope="node", since="7.0.0", summary="Stops listening to messages posted to shard channels.",
         arguments="[shardchannel [shardchannel ...]]")
def sunsubscribe(client: "Client", argv: list[bytes]) -> Replies:
    pubsub = client.node.pubsub
    targets = argv[1:] or sorted(client.shard_channels)
    if not targets:
        return Replies([Push([b"sunsubscribe", None, 0])])
    out = Replies()
    for channel in targets:
        pubsub.sunsubscribe(client, channel)
        client.shard_channels.discard(channel)
        client.subscribed = bool(client.subscriptions())
        out.append(Push([b"sunsubscribe", channel, len(client.shard_channels)]))
    return out


@command("spublish", arity=3, flags="pubsub loading stale fast may_replicate", keys=(1, 1, 1), acl="@pubsub", group="pubsub",
         scope="node", since="7.0.0", summary="Post a message to a shard channel.", arguments="shardchannel message")
def spublish(client: "Client", argv: list[bytes]) -> int:
    return client.node.pubsub.spublish(argv[1], argv[2])


# -- PUBSUB -------------------------------------------------------------------------

container("pubsub", group="pubsub", summary="A container for Pub/Sub commands.", acl="@pubsub")


def _listed(channels: dict[bytes, Any], argv: list[bytes]) -> list[bytes]:
    if len(argv) > 2:
        match = compile_glob(argv[2])
        return [c for c in channels if match(c) is not None]
    return list(channels)


def _counted(channels: dict[bytes, Any], argv: list[bytes]) -> list[Any]:
    flat: list[Any] = []
    for channel in argv[2:]:  # a flat array in RESP3 too, as Redis 7.2 sends it
        flat += [channel, len(channels.get(channel, ()))]
    return flat


@command("channels", arity=-2, flags="pubsub loading stale", acl="@pubsub", group="pubsub", scope="node",
         parent="pubsub", summary="Returns the active channels.", arguments="[pattern]")
def pubsub_channels(client: "Client", argv: list[bytes]) -> list[bytes]:
    return _listed(client.node.pubsub.channels, argv)


@command("numsub", arity=-2, flags="pubsub loading stale", acl="@pubsub", group="pubsub", scope="node",
         parent="pubsub", summary="Returns a count of subscribers to channels.", arguments="[channel ...]")
def pubsub_numsub(client: "Client", argv: list[bytes]) -> list[Any]:
    return _counted(client.node.pubsub.channels, argv)


@command("numpat", arity=2, flags="pubsub loading stale", acl="@pubsub", group="pubsub", scope="node",
         parent="pubsub", summary="Returns a count of unique pattern subscriptions.")
def pubsub_numpat(client: "Client", argv: list[bytes]) -> int:
    return client.node.pubsub.numpat()


@command("shardchannels", arity=-2, flags="pubsub loading stale", acl="@pubsub", group="pubsub", scope="node",
         parent="pubsub", since="7.0.0", summary="Returns the active shard channels.", arguments="[pattern]")
def pubsub_shardchannels(client: "Client", argv: list[bytes]) -> list[bytes]:
    return _listed(client.node.pubsub.shard_channels, argv)


@command("shardnumsub", arity=-2, flags="pubsub loading stale", acl="@pubsub", group="pubsub", scope="node",
         parent="pubsub", since="7.0.0", summary="Returns the count of subscribers of shard channels.",
         arguments="[shardchannel ...]")
def pubsub_shardnumsub(client: "Client", argv: list[bytes]) -> list[Any]:
    return _counted(client.node.pubsub.shard_channels, argv)
