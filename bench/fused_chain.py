#!/usr/bin/python3
"""The fused chain y = sum(sigmoid(a*x + b) * x), forward + backward over 10M floats:
PyTorch eager (Debian's python3-torch) and tensortape (bench_fused_chain) in one invocation.
Prints JSON lines with medians and the ratio.

    /usr/bin/python3 bench/fused_chain.py [--binary build/bench/bench_fused_chain] [--threads 2] [--n 10000000]
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def torch_chain(n, threads, reps):
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(7)
    a = (torch.rand(n, generator=g) * 2 - 1).requires_grad_()
    x = (torch.rand(n, generator=g) * 2 - 1).requires_grad_()
    b = (torch.rand(n, generator=g) * 2 - 1).requires_grad_()

    def step():
        a.grad = x.grad = b.grad = None
        y = (torch.sigmoid(a * x + b) * x).sum()
        y.backward()
        return y.item()

    step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), torch.__version__


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join("build", "bench", "bench_fused_chain"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--reps", type=int, default=21)
    args = p.parse_args()

    torch_ms, version = torch_chain(args.n, args.threads, args.reps)
    print(json.dumps({"bench": "fused_chain", "impl": "pytorch-eager", "version": version, "n": args.n,
                      "threads": args.threads, "median_ms": round(torch_ms, 3)}), flush=True)

    out = subprocess.run([args.binary, "--n", str(args.n), "--threads", str(args.threads), "--reps", str(args.reps)],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    for r in rows:
        print(json.dumps(r))
    ours = next(r for r in rows if r["bench"] == "fused_chain")
    print(json.dumps({"bench": "fused_chain_ratio", "speedup_vs_pytorch": round(torch_ms / ours["median_ms"], 2),
                      "target_speedup": 10.0}))


if __name__ == "__main__":
    main()
