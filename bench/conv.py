#!/usr/bin/python3
"""Conv2D forward + backward on the example network's layers: PyTorch CPU (Debian's
python3-torch, oneDNN) and tensortape (bench_conv) in one invocation, same threads. JSON lines.

    /usr/bin/python3 bench/conv.py [--binary build/bench/bench_conv] [--threads 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# PyTorch's thread settings that matter here; each is measured in its own process (they must be
# set before torch starts) and the best is kept: PyTorch at its best, not its default.
TORCH_SETTINGS = {"default": {}, "omp_passive": {"OMP_WAIT_POLICY": "passive"}, "openblas_1": {"OPENBLAS_NUM_THREADS": "1"}}

LAYERS = [("conv1", 64, 1, 28, 28, 32, False), ("conv2", 64, 32, 13, 13, 64, True)]


def torch_layers(threads, reps, setting):
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, n, c, h, w, co, input_grad in LAYERS:
        x = torch.rand(n, c, h, w) * 2 - 1
        x.requires_grad_(input_grad)
        conv = torch.nn.Conv2d(c, co, 3)
        gy = torch.rand(n, co, h - 2, w - 2) * 2 - 1

        def step():
            conv.zero_grad(set_to_none=True)
            x.grad = None
            conv(x).backward(gy)

        step()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        macs = n * co * (h - 2) * (w - 2) * c * 9
        flops = 2 * macs * (3 if input_grad else 2)
        out[name] = t
        print(json.dumps({"bench": "conv2d", "impl": "pytorch", "version": torch.__version__, "setting": setting, "layer": name,
                          "threads": threads, "fwd_bwd_ms": round(t * 1e3, 3), "gflops": round(flops / t / 1e9, 1)}), flush=True)
    return out


def best_torch(threads, reps):
    best = {}
    for setting, env in TORCH_SETTINGS.items():
        proc = subprocess.run([sys.executable, __file__, "--torch-only", setting, "--threads", str(threads), "--reps", str(reps)],
                              env={**os.environ, **env}, check=True, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            row = json.loads(line)
            print(json.dumps(row))
            if row["layer"] not in best or row["fwd_bwd_ms"] < best[row["layer"]]:
                best[row["layer"]] = row["fwd_bwd_ms"]
    return {k: v / 1e3 for k, v in best.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join("build", "bench", "bench_conv"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--torch-only", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_only:
        torch_layers(args.threads, args.reps, args.torch_only)
        return
    torch_t = best_torch(args.threads, args.reps)
    out = subprocess.run([args.binary, "--threads", str(args.threads), "--reps", str(args.reps)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        row = json.loads(line)
        print(json.dumps(row))
        if row.get("bench") == "conv2d":
            ratio = torch_t[row["layer"]] / (row["fwd_bwd_ms"] / 1e3)
            print(json.dumps({"bench": "conv2d_ratio", "layer": row["layer"], "threads": args.threads,
                              "speedup_vs_best_pytorch": round(ratio, 2)}))


if __name__ == "__main__":
    main()
