"""How much of a checkpoint compression could use a second core: a parallelism profile that a loaded
machine does not distort much.

    python -m tools.bench.bench_ckpt_parallelism CKPT OUT.dcz --workers 2

A sampler thread reads every 5 ms how many of the process's threads are runnable (state R in
/proc/self/task/*/stat) and charges the process CPU used since the previous sample to that count.
CPU charged while fewer than 2 threads were runnable could not have used a second core, so on two
idle cores T2 ~= cpu(r <= 1) + cpu(r >= 2) / 2, against T1 ~= the CPU of a 1-worker run, both plus
the interpreter start and the fsync that every run has. Wall times under load mean little; these
CPU shares do. Linux only. Also prints the close (header + body copy + fsync) and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import collections
import os
import threading
import time

from dcz.compressor.checkpoint import compress_checkpoint
from dcz.formats import streaming

INTERVAL = 0.005


def runnable_threads(skip: int) -> int:
    count = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == skip:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                count += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except OSError:
            pass
    return count


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.cpu, self.wall, self.stop = collections.Counter(), collections.Counter(), False

    def run(self):
        me = threading.get_native_id()
        c0, t0 = time.process_time(), time.perf_counter()
        while not self.stop:
            time.sleep(INTERVAL)
            r = min(runnable_threads(me), 2)
            c1, t1 = time.process_time(), time.perf_counter()
            self.cpu[r] += c1 - c0
            self.wall[r] += t1 - t0
            c0, t0 = c1, t1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    closing = {}
    publish = streaming.StreamWriter._publish

    def timed_publish(self):
        t, c = time.perf_counter(), time.process_time()
        publish(self)
        closing.update(wall=time.perf_counter() - t, cpu=time.process_time() - c)

    streaming.StreamWriter._publish = timed_publish
    sampler = Sampler()
    sampler.start()
    w0, c0 = time.perf_counter(), time.process_time()
    compress_checkpoint(args.checkpoint, args.out, workers=args.workers, progress=False)
    sampler.stop = True
    sampler.join()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
    print(f"workers {args.workers}: wall {wall:.2f} s, CPU {cpu:.2f} s, load {os.getloadavg()[0]:.1f}, "
          f"peak RSS {int(hwm) / 1e6:.2f} GB")  # fmt: skip
    for r, label in ((0, "0"), (1, "1"), (2, ">=2")):
        print(f"  runnable {label}: CPU {sampler.cpu[r]:.2f} s, wall {sampler.wall[r]:.2f} s")
    serial = sampler.cpu[0] + sampler.cpu[1]
    t2 = serial + sampler.cpu[2] / 2
    print(f"  on 2 idle cores (CPU only): T2 ~= {serial:.2f} + {sampler.cpu[2]:.2f} / 2 = {t2:.2f} s; "
          f"this run's CPU / T2 = {cpu / t2:.2f}x")  # fmt: skip
    print(f"  close (header + body copy + fsync): wall {closing['wall']:.2f} s, CPU {closing['cpu']:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
