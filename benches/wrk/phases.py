#!/usr/bin/env python3
"""Where a forwarded request's CPU goes, by phase of the request path.

Reads `perf script` output (call graphs recorded with frame pointers) on stdin and prints, for
each phase, the user-space CPU microseconds per request it took, then the kernel's time as one
figure: system calls enter the kernel through libc, which has no frame pointers, so their
samples cannot be followed back to the phase that made them.

    perf script -i perf.data | benches/wrk/phases.py CPU_US_PER_REQUEST

CPU_US_PER_REQUEST is the process's CPU time per request over the recording (from
/proc/PID/stat); each phase gets its share of the samples of it.

A sample belongs to the phase of the first frame of the proxy's own code found walking up from
where it was taken: a hash computed for a signature is signing, hyper's parser called by the
upstream connection is the upstream client, and hyper's server code calling the proxy's service
is the front-end server. A sample with none of the proxy's frames is the runtime's (the tokio
scheduler, waiting for events).
"""

import re
import sys
from collections import Counter

# (phase, pattern on a frame's symbol), tried in order on each frame. Helpers that several
# phases call (hashing, key encoding) match none, so their samples go to their caller's phase.
PHASES = [
    ("signing (SigV4)", r"dynamo_cache::upstream::sign::"),
    ("request parsing", r"dynamo_cache::wire::request::"),
    ("cache layer (write tracking, storing)", r"dynamo_cache::cache::"),
    ("finding the written key", r"dynamo_cache::proxy::write::item_key_of"),
    ("upstream HTTP client", r"dynamo_cache::upstream::(conn::|Upstream|verify_crc)"),
    ("credentials", r"dynamo_cache::upstream::credentials::"),
    ("metrics", r"dynamo_cache::metrics::"),
    ("request path (the rest)", r"dynamo_cache::(run|proxy|front)::|dynamo_cache::run<"),
    ("front-end HTTP server", r"dynamo_cache::net::(listener::Lane<P>::drive|http::)"),
]
FRAME = re.compile(r"\s*[0-9a-f]+ (.*?)(?:\+0x[0-9a-f]+)? \((.*)\)$")


def phase_of(frames):
    for symbol, _ in frames:
        for name, pattern in PHASES:
            if re.search(pattern, symbol):
                return name
    return "runtime (scheduler, event loop)"


def main():
    per_request = float(sys.argv[1])
    user = Counter()
    total = kernel = 0
    for sample in sys.stdin.read().split("\n\n"):
        frames = [m.groups() for m in map(FRAME.match, sample.strip().split("\n")[1:]) if m]
        if not frames:
            continue
        total += 1
        if "kernel" in frames[0][1]:
            kernel += 1
        else:
            user[phase_of(frames)] += 1
    if total == 0:
        sys.exit("no samples")
    scale = per_request / total
    print(f"{'CPU µs per request':40} {'':>6}")
    for name, count in user.most_common():
        print(f"  {name:38} {count * scale:6.2f}")
    print(f"{'user space':40} {sum(user.values()) * scale:6.2f}")
    print(f"{'kernel':40} {kernel * scale:6.2f}")


if __name__ == "__main__":
    main()
