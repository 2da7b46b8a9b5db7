"""Python's croniter as an independent oracle for tests/it/cron_oracle.rs.

Reads one JSON array of queries on stdin, each {"expr", "tz", "after_ms", "day_or"}, and
writes one JSON array of answers on stdout, each {"next_ms": <int or null>, "error": ...}:
croniter's first fire strictly after `after_ms` on `tz`'s wall clock. One process answers the
whole batch.

Zones come from pytz (croniter's own zone library, pinned with it), not zoneinfo: croniter
6.0.0 with a zoneinfo zone answers an hour off when the next fire lies across a DST change
from the start (`* * * 2 2` after an October instant in New York: 01:00 EST, not 00:00).
"""

import json
import sys
from datetime import datetime, timedelta, timezone

try:
    import pytz
    from croniter import CroniterBadDateError, croniter
except ImportError as e:
    sys.stderr.write(f"croniter is not importable ({e}); run scripts/install-py-tools.sh\n")
    sys.exit(3)


def main():
    queries = json.load(sys.stdin)
    zones = {}
    parsed = {}
    answers = []
    for q in queries:
        tz = zones.get(q["tz"])
        if tz is None:
            tz = zones[q["tz"]] = timezone.utc if q["tz"] == "UTC" else pytz.timezone(q["tz"])
        after_ms = q["after_ms"]
        start = datetime.fromtimestamp(after_ms // 1000, tz) + timedelta(milliseconds=after_ms % 1000)
        try:
            # One croniter per expression and zone (parsing is a good part of its cost).
            key = (q["expr"], q["tz"], q["day_or"])
            it = parsed.get(key)
            if it is None:
                it = parsed[key] = croniter(q["expr"], start, day_or=q["day_or"])
            next_s = it.get_next(float, start_time=start)
            answers.append({"next_ms": round(next_s * 1000), "error": None})
        except CroniterBadDateError as e:
            answers.append({"next_ms": None, "error": str(e)})
    json.dump(answers, sys.stdout)


main()
