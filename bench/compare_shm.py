"""compare_shm.py - the Python side of bench_compare: the same data in a
multiprocessing.shared_memory segment, summed with NumPy in fresh processes.

    python3 compare_shm.py NAME MIB EXPECTED_SUM

Run by bench_compare (with the interpreter that has NumPy: /usr/bin/python3
on Debian), talking over stdin/stdout, one line each way:

  start    creates the segment NAME (SharedMemory(NAME, create=True)) of MIB
           MiB, fills it with the benchmark's <f8 data (element i is
           (i ^ (i >> 17)) & 0xffff, as bench_value() of common.h) and prints
           "ready <fill seconds>", or "unavailable <why>" (no NumPy) and
           exits 0.
  "shm"    a fresh process (multiprocessing, start method "spawn": a new
           interpreter, nothing inherited) imports NumPy, attaches the
           segment by name, wraps it in an ndarray (untimed) and sums it
           with np.sum: once cold (its first touch of every page), then
           WARM_PASSES times; prints "shm <cold s> <fastest warm s> <minor
           faults of the cold sum>".
  "numpy"  the baseline of the NumPy side: a fresh process fills a private
           NumPy array of the same size (untimed, so its pages are
           populated) and sums it the same way; prints "numpy <first s>
           <fastest warm s> <minor faults of the first sum>".
  "quit"   (or end of input) unlinks the segment and exits 0.

Every sum is checked against EXPECTED_SUM (exact: small integers).  On an
error it prints "error <why>" and exits 1; the segment is unlinked on every
path (bench_compare also unlinks /NAME after it ends, in case it was killed).
"""
import multiprocessing as mp
import resource
import sys
import time

try:
    import numpy as np
except ImportError as e:  # reported, not a failure: the C figures still count
    np = None
    NUMPY_ERROR = str(e)

WARM_PASSES = 3
BLOCK = 2 << 20  # bytes of data filled at a time (one shma block)


def fill(a):
    """Fill the float64 array a with the benchmark's data, a block at a time."""
    per = BLOCK // 8
    for start in range(0, a.size, per):
        i = np.arange(start, min(start + per, a.size), dtype=np.uint64)
        a[start:start + i.size] = (i ^ (i >> np.uint64(17))) & np.uint64(0xFFFF)


def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_sums(a, expect):
    """The first sum, the fastest of WARM_PASSES more, the first's faults."""
    f0 = minflt()
    t0 = time.perf_counter()
    s = float(np.sum(a))
    first = time.perf_counter() - t0
    faults = minflt() - f0
    if s != expect:
        raise ValueError(f"sum {s!r}, want {expect!r}: wrong data")
    warm = float("inf")
    for _ in range(WARM_PASSES):
        t0 = time.perf_counter()
        s = float(np.sum(a))
        warm = min(warm, time.perf_counter() - t0)
        if s != expect:
            raise ValueError(f"warm sum {s!r}, want {expect!r}: wrong data")
    return first, warm, faults


def reader_shm(conn, name, nelem, expect):
    """In a fresh process: attach the segment and sum it."""
    from multiprocessing import shared_memory
    try:
        shm = shared_memory.SharedMemory(name=name)
        try:
            a = np.ndarray((nelem,), dtype="<f8", buffer=shm.buf)
            conn.send(("shm",) + timed_sums(a, expect))
            del a
        finally:
            shm.close()
    except Exception as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"shm reader: {e}"))


def reader_numpy(conn, nelem, expect):
    """In a fresh process: a private array, filled, then summed."""
    try:
        a = np.empty(nelem, dtype="<f8")
        fill(a)
        conn.send(("numpy",) + timed_sums(a, expect))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"numpy reader: {e}"))


def run_fresh(ctx, target, args):
    """Run target(conn, *args) in a spawned process; return what it sent."""
    rd, wr = ctx.Pipe(duplex=False)
    p = ctx.Process(target=target, args=(wr,) + args)
    p.start()
    wr.close()
    try:
        res = rd.recv()
    except EOFError:
        res = ("error", "the reader process ended without a result")
    p.join()
    if res[0] != "error" and p.exitcode != 0:
        res = ("error", f"the reader process exited with {p.exitcode}")
    return res


def say(*words):
    print(*words, flush=True)


def main():
    if len(sys.argv) != 4:
        say("error usage: compare_shm.py NAME MIB EXPECTED_SUM")
        return 1
    if np is None:
        say("unavailable", "NumPy:", NUMPY_ERROR)
        return 0
    from multiprocessing import shared_memory
    name, mib, expect = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    nelem = (mib << 20) // 8
    ctx = mp.get_context("spawn")

    shm = shared_memory.SharedMemory(name=name, create=True, size=mib << 20)
    try:
        a = np.ndarray((nelem,), dtype="<f8", buffer=shm.buf)
        t0 = time.perf_counter()
        fill(a)
        say("ready", f"{time.perf_counter() - t0:.3f}")
        del a  # the segment cannot close while an ndarray exports its buffer
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            if cmd == "shm":
                res = run_fresh(ctx, reader_shm, (name, nelem, expect))
            elif cmd == "numpy":
                res = run_fresh(ctx, reader_numpy, (nelem, expect))
            else:
                res = ("error", f"unknown command {cmd!r}")
            if res[0] == "error":
                say("error", res[1])
                return 1
            say(res[0], f"{res[1]:.6f}", f"{res[2]:.6f}", res[3])
    finally:
        shm.close()
        shm.unlink()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - one line for bench_compare
        say("error", f"{type(e).__name__}: {e}")
        sys.exit(1)
