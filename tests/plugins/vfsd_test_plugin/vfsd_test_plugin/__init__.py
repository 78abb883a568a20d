"""An example vfsd collector: the README's ten-line plugin."""

import time

import psutil

from vfsd.collectors import Collector


class Uptime(Collector):
    name, kind, interval_s = "uptime", "status", 10.0

    def collect(self, now_s):
        return {"uptime": {"uptime_seconds": round(time.time() - psutil.boot_time())}}
