"""The peer port: how vfsd nodes talk to each other (Raft and gossip share it).

One TCP listener per node; one persistent, authenticated connection per pair of
nodes; length-prefixed frames, each naming a message family (Raft, gossip) and a
message type, with a msgpack body. The modules, each with one job:

``frame``       the frame layout, the append-only registry of families and types,
                the incremental decoder and the encoder (sans-IO)
``hello``       the HELLO each side opens with, and the transcript proofs cover (sans-IO)
``auth``        the authentication hook: ``Authenticator``, no-auth and shared-secret HMAC (sans-IO)
``connection``  one connection's protocol: HELLO/AUTH handshake, control frames,
                keepalive and timeouts, as a pure state machine fed bytes and time
``backoff``     capped exponential reconnect delays with jitter (sans-IO)
``counters``    the counters INFO shows
``settings``    every knob, with its default
``transport``   the asyncio shell: listener, dialing, per-peer send queues, dispatch

Importing this package imports none of them, so the pure modules stay free of asyncio.

How the rest of a node uses it: the node builds one ``PeerTransport`` (``from_config``),
starts it with the node and stops it with the node; each replication family
``register``s its handlers and calls ``send``; the node's INFO shows ``info()``.
"""
