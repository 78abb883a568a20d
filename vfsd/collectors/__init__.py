"""Collectors: Props (inventory, ``/hw/<node>``) and Status (load, ``/sum/<node>``), as plugins.

A collector implements ``vfsd.collectors.Collector`` (``name``, ``kind``,
``interval_s``, ``collect(now_s) -> documents``) and registers in the entry-point
group ``vfsd.collectors``; the built-ins (``props``, ``status``, ``gpu_props``,
``gpu_status``) register the same way. ``runner.CollectorRunner`` runs them off
the event loop and writes their documents through the node; health goes to
``/itg/<node>/collectors/<name>``. Module map:

- ``base``       the interface
- ``registry``   entry-point discovery and instantiation
- ``settings``   the ``[collectors]`` table
- ``runner``     the asyncio shell (threads, timeouts, writes)
- ``health``     state, backoff and log rate limiting (pure)
- ``rates``      counter-delta rates with reset handling (pure)
- ``documents``  checking and merging documents (pure)
- ``props``, ``status``, ``gpu``  the built-in collectors
"""

from vfsd.collectors.base import KINDS, PROPS, STATUS, Collector, Documents

__all__ = ["Collector", "Documents", "KINDS", "PROPS", "STATUS"]
