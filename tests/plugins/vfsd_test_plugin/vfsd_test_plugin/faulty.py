"""Collectors that misbehave, for the failure-isolation tests (not registered by this package's pyproject)."""

import threading

from vfsd.collectors import Collector

#: Set by an in-process test to let a hung collect() return; a vfsd serve process just exits around it.
release = threading.Event()


class Boom(Collector):
    name, kind, interval_s = "boom", "status", 0.2

    def collect(self, now_s):
        raise RuntimeError("boom: this collector always fails")


class Hang(Collector):
    name, kind, interval_s = "hang", "status", 0.2

    def collect(self, now_s):
        release.wait(3600)
        return {"hang": {"returned": True}}


class NotJson(Collector):
    name, kind, interval_s = "not_json", "props", 0.2

    def collect(self, now_s):
        return {"bad": {"value": {1, 2, 3}}}
