"""How much of the server's CPU is Tornado's own code, from py-spy collapsed stacks (profile.sh output).

    python3 bench/experiments/tornado_share.py /tmp/prof/NAME.txt

Prints the share of samples whose innermost Python frame is in Tornado (its
self time), and, within the per-delivery write (``write_text``) and the
inbound reader (``receive_frames``), the share spent in Tornado's frames.
That bounds what owning the protocol outright (HTTP1Connection.detach()
and a protocol of our own) could save: the same work would remain, written
by us.
"""

import collections
import sys

for path in sys.argv[1:]:
    total = 0
    counts: collections.Counter[str] = collections.Counter()
    for line in open(path):
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(n)
        total += samples
        frames = stack.split(";")
        leaf = frames[-1]
        if "(tornado/" in leaf:
            counts["tornado self time (all)"] += samples
        for name in ("write_text", "receive_frames", "send_frame", "_fan_out"):
            if any(f.startswith(name + " ") for f in frames):
                counts[f"in {name}"] += samples
                if "(tornado/" in leaf:
                    counts[f"  of which tornado self time, in {name}"] += samples
    print(path, "samples", total)
    for key, samples in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {key:50s} {samples:7d}  {samples / total * 100:5.1f}%")
