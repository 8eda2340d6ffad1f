#!/usr/bin/env python3
"""Prints the genlab-vs-PyTorch table of a bench/compare.sh results file (JSON lines).

    python3 bench/table.py bench/results/<file>.jsonl

Per model and thread count: the median over rounds of each round's median images/s, their ratio
(genlab / PyTorch), and each side's share of its own sgemm peak at the same thread count: the
median over rounds of each round's GFLOP/s over the peak measured in that round (files from
before the peak was measured every round: the one peak of the run).
"""

import json
import statistics
import sys
from collections import defaultdict


def main(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    ips = defaultdict(list)  # (model, threads, framework) -> each round's median images/s
    rounds_of = defaultdict(list)  # (model, threads, framework) -> the rounds, in the same order
    flop = {}  # (model, framework) -> FLOPs per image
    peak = {}  # (framework, threads, round) -> sgemm GFLOP/s, from the invocation at that thread count
    for l in lines:
        if l.get("kind") == "train":
            key = (l["model"], l["threads"], l["framework"])
            ips[key].append(l["images_per_sec"])
            rounds_of[key].append(l.get("round", 1))
            flop[(l["model"], l["framework"])] = l["flop_per_image"]
        elif l.get("kind") == "sgemm" and l.get("pool", l["threads"]) == l["threads"]:
            peak[(l["framework"], l["threads"], l.get("round", 1))] = l["gflops"]
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
          f"% = median over rounds of GFLOP/s as a share of the same side's sgemm peak of that round\n")
    print(f"{'model':<14} {'threads':>7} {'genlab':>9} {'pytorch':>9} {'ratio':>6} "
          f"{'genlab %':>9} {'torch %':>8}")
    models = list(dict.fromkeys(k[0] for k in ips))

    def peak_at(fw, threads, rnd):
        """The peak of round `rnd`, else the run's only one (older files)."""
        p = peak.get((fw, threads, rnd))
        others = [v for (f, t, _), v in peak.items() if f == fw and t == threads]
        return p if p else (others[0] if len(others) == 1 else None)

    def pct(model, threads, fw):
        key = (model, threads, fw)
        f = flop.get((model, fw))
        shares = [v * f / 1e9 / p for v, r in zip(ips.get(key, []), rounds_of[key])
                  if f and (p := peak_at(fw, threads, r))]
        return f"{100 * statistics.median(shares):.0f}%" if shares else "-"

    for threads in sorted({k[1] for k in ips}, reverse=True):
        for m in models:
            g, p = ips.get((m, threads, "genlab")), ips.get((m, threads, "pytorch"))
            if not g and not p:
                continue
            gm = statistics.median(g) if g else float("nan")
            pm = statistics.median(p) if p else float("nan")
            ratio = gm / pm if g and p else float("nan")
            print(f"{m:<14} {threads:>7} {gm:>9.0f} {pm:>9.0f} {ratio:>6.2f} "
                  f"{pct(m, threads, 'genlab'):>9} {pct(m, threads, 'pytorch'):>8}")
    print(f"\nraw: {path}")


if __name__ == "__main__":
    main(sys.argv[1])
