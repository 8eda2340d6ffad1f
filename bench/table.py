#!/usr/bin/env python3
"""Prints the genlab-vs-PyTorch table of a bench/compare.sh results file (JSON lines).

    python3 bench/table.py bench/results/<file>.jsonl

Per model and thread count: the median over rounds of each round's median images/s, their ratio
(genlab / PyTorch), and each side's GFLOP/s at that median as a share of its own sgemm peak at
the same thread count (measured in the same run).
"""

import json
import statistics
import sys
from collections import defaultdict


def main(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    ips = defaultdict(list)  # (model, threads, framework) -> each round's median images/s
    flop = {}  # (model, framework) -> FLOPs per image
    peak = {}  # (framework, threads) -> sgemm GFLOP/s
    for l in lines:
        if l.get("kind") == "train":
            ips[(l["model"], l["threads"], l["framework"])].append(l["images_per_sec"])
            flop[(l["model"], l["framework"])] = l["flop_per_image"]
        elif l.get("kind") == "sgemm":
            peak[(l["framework"], l["threads"])] = l["gflops"]
    machine = next((l for l in lines if l.get("kind") == "machine"), {})
    print(f"{machine.get('cpu', '?')}, {machine.get('nproc', '?')} cores, {machine.get('date', '')}")
    for l in lines:
        if l.get("kind") == "sgemm":
            print(f"sgemm {l['n']}^3 {l['framework']:<8} {l['threads']} thread(s): "
                  f"{l['gflops']:.1f} GFLOP/s peak, {l['gflops_median']:.1f} median")
    for l in lines:
        if l.get("kind") == "load":
            print(f"load {l['format']:<10} {l['images']:>6} images: {l['seconds']:.3f} s "
                  f"({l['images_per_sec']:.0f} images/s)")
    rounds = len({l.get("round", 1) for l in lines if l.get("kind") == "train"})
    print(f"\nmedian images/s over {rounds} interleaved round(s), each a median of repeats; "
          f"% = GFLOP/s as a share of the same side's sgemm peak\n")
    print(f"{'model':<14} {'threads':>7} {'genlab':>9} {'pytorch':>9} {'ratio':>6} "
          f"{'genlab %':>9} {'torch %':>8}")
    models = list(dict.fromkeys(k[0] for k in ips))

    def pct(model, threads, fw, v):
        p = peak.get((fw, threads))
        f = flop.get((model, fw))
        return f"{100 * v * f / 1e9 / p:.0f}%" if p and f and v == v else "-"

    for threads in sorted({k[1] for k in ips}, reverse=True):
        for m in models:
            g, p = ips.get((m, threads, "genlab")), ips.get((m, threads, "pytorch"))
            if not g and not p:
                continue
            gm = statistics.median(g) if g else float("nan")
            pm = statistics.median(p) if p else float("nan")
            ratio = gm / pm if g and p else float("nan")
            print(f"{m:<14} {threads:>7} {gm:>9.0f} {pm:>9.0f} {ratio:>6.2f} "
                  f"{pct(m, threads, 'genlab', gm):>9} {pct(m, threads, 'pytorch', pm):>8}")
    print(f"\nraw: {path}")


if __name__ == "__main__":
    main(sys.argv[1])
