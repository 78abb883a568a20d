"""VFS.CLUSTER: the desired plane's Raft membership, as an operator sees and changes it.

``MEMBERS`` lists every member (Raft role, address, and the gossip state when the node
gossips); ``ADD``, ``REMOVE`` and ``PROMOTE`` propose single-server membership changes
and answer once the change is committed and applied here; ``TRANSFER`` hands leadership
to a voter. Members are named by node name or by member id (``<node>-<suffix>``, one
incarnation of a node: a node whose data dir was wiped comes back as a new member).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from vfsd.commands.table import command, container
from vfsd.raft import ConfChange, ConfChangeError, Member
from vfsd.raft.config import ChangeOp
from vfsd.resp.types import OK, ErrorReply, SimpleString

if TYPE_CHECKING:
    from vfsd.server import Client

NOT_CLUSTERED = ErrorReply("ERR this node is not part of a cluster (start it with --peers or --join)")

container("vfs.cluster", group="vfs", summary="A container for cluster membership commands.", acl="@admin")

HELP = [
    "VFS.CLUSTER <subcommand> [<arg> ...]. Subcommands are:",
    "MEMBERS", "    List the members: id, name, peer address, Raft role, gossip state.",
    "ADD <name> <host:peerport> [LEARNER]", "    Add the node listening there as a voter (or a learner).",
    "REMOVE <name|member-id>", "    Remove a voter or learner.",
    "PROMOTE <name|member-id>", "    Make a learner a voter.",
    "TRANSFER <name|member-id>", "    Hand leadership to a voter.",
    "HELP", "    Print this help.",
]


def _plane(client: "Client") -> Any:
    node = client.node
    if not node.raft_member:
        raise NOT_CLUSTERED
    return node.planes["log"]


def _member(plane: Any, text: bytes) -> Member:
    wanted = text.decode(errors="replace")
    for m in plane.members():
        if m.member_id == wanted:
            return m
    named = [m for m in plane.members() if m.name == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        raise ErrorReply(f"ERR node '{wanted}' is {len(named)} members: name one by member id")
    raise ErrorReply(f"ERR no member '{wanted}' in the desired plane's cluster")


@command("help", arity=2, flags="loading stale", group="vfs", scope="node", parent="vfs.cluster",
         summary="Shows helpful text about the different subcommands.")
def cluster_help(client: "Client", argv: list[bytes]) -> Any:
    return [SimpleString(line) for line in HELP]


@command("members", arity=2, flags="loading stale", group="vfs", scope="node", parent="vfs.cluster",
         summary="Lists the cluster's members with their Raft role and gossip state.")
def cluster_members(client: "Client", argv: list[bytes]) -> Any:
    plane = _plane(client)
    gossip = getattr(client.node, "gossip", None)
    states: dict[str, str] = {}
    if gossip is not None:
        for row in gossip.members():
            states[str(row.get("id", ""))] = str(row.get("state", ""))
    status = plane.status()
    out = []
    for m in sorted(plane.members(), key=lambda m: m.name):
        out.append({
            b"id": m.member_id.encode(), b"name": m.name.encode(), b"address": m.address.encode(),
            b"role": plane.role_of(m.member_id).encode(),
            b"self": 1 if m.member_id == plane.member_id else 0,
            b"gossip": states.get(m.name, "").encode(),
        })
    if plane.member_id not in {m.member_id for m in plane.members()}:
        out.append({b"id": plane.member_id.encode(), b"name": plane.node_name.encode(),
                    b"address": plane.advertised_address.encode(), b"role": status["role"].encode(),
                    b"self": 1, b"gossip": states.get(plane.node_name, "").encode()})
    return out


@command("add", arity=-4, flags="admin", group="vfs", scope="node", parent="vfs.cluster",
         summary="Adds the node at a peer address as a voter or learner.", arguments="name address [LEARNER]")
def cluster_add(client: "Client", argv: list[bytes]) -> Any:
    plane = _plane(client)
    if len(argv) > 5 or (len(argv) == 5 and argv[4].lower() != b"learner"):
        raise ErrorReply("ERR syntax error: VFS.CLUSTER ADD <name> <host:peerport> [LEARNER]")
    name = argv[2].decode(errors="replace")
    address = argv[3].decode(errors="replace")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ErrorReply(f"ERR '{address}' is not a host:peerport address")
    learner = len(argv) == 5
    return asyncio.ensure_future(_add(plane, name, host, int(port), learner))


async def _add(plane: Any, name: str, host: str, port: int, learner: bool) -> Any:
    try:
        peer = await plane.transport.dial(host, port, timeout_s=2.0)
    except Exception as exc:
        return ErrorReply(f"ERR cannot reach {host}:{port}: {exc}")
    if peer != name:
        return ErrorReply(f"ERR the node at {host}:{port} is '{peer}', not '{name}'")
    member_id = plane.hello_member_id(name)
    if member_id is None:
        return ErrorReply(f"ERR the node at {host}:{port} did not say its member id")
    current = {m.member_id: m for m in plane.members()}
    if member_id in current:
        if learner or plane.role_of(member_id) != "learner":
            return OK
        change = ConfChange(ChangeOp.PROMOTE_LEARNER, member_id)
    else:
        for m in current.values():
            if m.name == name:
                return ErrorReply(f"ERR node '{name}' is already a member as {m.member_id}; remove it first")
        member = Member(member_id, name, f"{host}:{port}")
        change = ConfChange.add_learner(member) if learner else ConfChange.add_voter(member)
    return await plane.change_membership(change)


@command("remove", arity=3, flags="admin", group="vfs", scope="node", parent="vfs.cluster",
         summary="Removes a voter or learner.", arguments="member")
def cluster_remove(client: "Client", argv: list[bytes]) -> Any:
    plane = _plane(client)
    m = _member(plane, argv[2])
    op = ChangeOp.REMOVE_LEARNER if plane.role_of(m.member_id) == "learner" else ChangeOp.REMOVE_VOTER
    return _change(plane, ConfChange(op, m.member_id))


@command("promote", arity=3, flags="admin", group="vfs", scope="node", parent="vfs.cluster",
         summary="Makes a learner a voter.", arguments="member")
def cluster_promote(client: "Client", argv: list[bytes]) -> Any:
    plane = _plane(client)
    m = _member(plane, argv[2])
    if plane.role_of(m.member_id) != "learner":
        raise ErrorReply(f"ERR member {m.member_id} is a voter already")
    return _change(plane, ConfChange(ChangeOp.PROMOTE_LEARNER, m.member_id))


@command("transfer", arity=3, flags="admin", group="vfs", scope="node", parent="vfs.cluster",
         summary="Hands the desired plane's leadership to a voter.", arguments="member")
def cluster_transfer(client: "Client", argv: list[bytes]) -> Any:
    plane = _plane(client)
    m = _member(plane, argv[2])
    reason = plane.transfer(m.member_id)
    if reason is not None:
        raise ErrorReply(f"ERR cannot transfer leadership to {m.member_id}: {reason}")
    return OK


def _change(plane: Any, change: ConfChange) -> Any:
    try:
        return plane.change_membership(change)
    except ConfChangeError as exc:
        raise ErrorReply(f"ERR {exc}") from None
