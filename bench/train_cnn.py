#!/usr/bin/python3
"""Training speed of the example CNN (the seed's Keras model on Fashion-MNIST): PyTorch CPU
(Debian's python3-torch) and examples/fashion_mnist_cnn, same model, batch, threads, data and
number of steps, in one invocation. PyTorch runs in each of its useful thread settings in its own
process and the best is kept. Prints JSON lines with examples per second and the ratio.

    /usr/bin/python3 bench/train_cnn.py [--binary build/examples/fashion_mnist_cnn] [--threads 2]
                                        [--steps 200] [--batch 64] [--data DIR]
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

TORCH_SETTINGS = {"default": {}, "omp_passive": {"OMP_WAIT_POLICY": "passive"}, "openblas_1": {"OPENBLAS_NUM_THREADS": "1"}}


def read_idx(path):
    import numpy as np

    for p in (path, path + ".gz"):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"missing {path}")


def torch_run(data, threads, steps, batch, setting):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(read_idx(os.path.join(data, "train-images-idx3-ubyte")).astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(os.path.join(data, "train-labels-idx1-ubyte")).astype(np.int64))
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(x.shape[0])

    def step(i):
        idx = perm[(i * batch) % (x.shape[0] - batch):][:batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(10):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    secs = time.perf_counter() - t0
    print(json.dumps({"bench": "train_cnn", "impl": "pytorch", "version": torch.__version__, "setting": setting, "threads": threads,
                      "batch": batch, "steps": steps, "examples_per_second": round(steps * batch / secs, 1)}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join("build", "examples", "fashion_mnist_cnn"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--torch-only", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_only:
        torch_run(args.data, args.threads, args.steps, args.batch, args.torch_only)
        return

    best = 0.0
    for setting, env in TORCH_SETTINGS.items():
        out = subprocess.run([sys.executable, __file__, "--torch-only", setting, "--threads", str(args.threads), "--steps",
                              str(args.steps), "--batch", str(args.batch), "--data", args.data],
                             env={**os.environ, **env}, check=True, capture_output=True, text=True).stdout
        row = json.loads(out)
        print(json.dumps(row), flush=True)
        best = max(best, row["examples_per_second"])

    # One epoch over steps * batch training images (--limit counts the 20% held out for validation too).
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "run.json")
        limit = (args.steps * args.batch * 5 + 3) // 4
        subprocess.run([args.binary, "--data", args.data, "--epochs", "1", "--batch", str(args.batch), "--threads", str(args.threads),
                        "--limit", str(limit), "--json", js], check=True, capture_output=True, text=True)
        run = json.load(open(js))
    eps = run["epochs"][0]["examples_per_second"]
    print(json.dumps({"bench": "train_cnn", "impl": "tensortape", "threads": args.threads, "batch": args.batch, "steps": args.steps,
                      "examples_per_second": round(eps, 1)}))
    print(json.dumps({"bench": "train_cnn_ratio", "speedup_vs_best_pytorch": round(eps / best, 2), "target_speedup": 2.0}))


if __name__ == "__main__":
    main()
