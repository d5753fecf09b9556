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
import time

# PyTorch at its best here: OpenMP workers that sleep instead of spinning against each other.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

LAYERS = [("conv1", 64, 1, 28, 28, 32, False), ("conv2", 64, 32, 13, 13, 64, True)]


def torch_layers(threads, reps):
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
        print(json.dumps({"bench": "conv2d", "impl": "pytorch", "version": torch.__version__, "layer": name, "threads": threads,
                          "fwd_bwd_ms": round(t * 1e3, 3), "gflops": round(flops / t / 1e9, 1)}), flush=True)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join("build", "bench", "bench_conv"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=21)
    args = p.parse_args()
    torch_t = torch_layers(args.threads, args.reps)
    out = subprocess.run([args.binary, "--threads", str(args.threads), "--reps", str(args.reps)], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        row = json.loads(line)
        print(json.dumps(row))
        if row.get("bench") == "conv2d":
            ratio = torch_t[row["layer"]] / (row["fwd_bwd_ms"] / 1e3)
            print(json.dumps({"bench": "conv2d_ratio", "layer": row["layer"], "threads": args.threads,
                              "speedup_vs_pytorch": round(ratio, 2)}))


if __name__ == "__main__":
    main()
