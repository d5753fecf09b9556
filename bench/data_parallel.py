#!/usr/bin/env python3
"""Time per training step of the Fashion-MNIST CNN at 1 and 2 replicas, threads and MPI.

    python3 bench/data_parallel.py [--build build] [--limit 12000] [--repeats 3]

Runs build/examples/data_parallel_mnist (and fashion_mnist_cnn for comparison) for one epoch in
each configuration, three times, and prints one JSON line per configuration with the median
time per step (global batch 64, training only), the gradient reduction time per step, the share
of it hidden behind backward, and the scaling efficiency against one replica with the same
kernel threads per replica: throughput(N) / (N * throughput(1)).

Two vCPUs allow two replicas of one kernel thread each; the baseline they are held against is
one replica of one thread, and, as a second line of comparison, one process using both cores
for its kernels (fashion_mnist_cnn --threads 2).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
}


def run(cmd, env):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        full = cmd + ["--json", out.name]
        subprocess.run(full, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
        with open(out.name) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--limit", type=int, default=12000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dp = os.path.join(args.build, "examples", "data_parallel_mnist")
    single = os.path.join(args.build, "examples", "fashion_mnist_cnn")
    common = ["--epochs", "1", "--limit", str(args.limit), "--batch", "64"]
    configs = [
        ("threads", 1, 1, [dp, "--replicas", "1", "--threads", "1"], {}),
        ("threads", 2, 1, [dp, "--replicas", "2", "--threads", "1"], {}),
        ("mpi", 1, 1, ["mpirun", "-np", "1", dp, "--threads", "1"], MPI_ENV),
        ("mpi", 2, 1, ["mpirun", "-np", "2", "--oversubscribe", dp, "--threads", "1"], MPI_ENV),
        ("mpi-256KiB-buckets", 2, 1, ["mpirun", "-np", "2", "--oversubscribe", dp, "--threads", "1", "--bucket-kib", "256"], MPI_ENV),
        ("single-process", 1, 2, [single, "--threads", "2"], {}),
    ]
    baseline = {}
    for name, replicas, threads, cmd, env in configs:
        runs = [run(cmd + common, env) for _ in range(args.repeats)]
        epoch = lambda r: r["epochs"][0]
        ex_s = statistics.median(epoch(r)["examples_per_second"] for r in runs)
        step_ms = 64 / ex_s * 1e3
        row = {
            "bench": "data_parallel",
            "config": name,
            "replicas": replicas,
            "threads_per_replica": threads,
            "examples_per_second": round(ex_s, 1),
            "ms_per_step": round(step_ms, 3),
        }
        if "reduce_ms_per_step" in runs[0]:
            row["reduce_ms_per_step"] = round(statistics.median(r["reduce_ms_per_step"] for r in runs), 3)
            row["reduce_wait_ms_per_step"] = round(statistics.median(r["reduce_wait_ms_per_step"] for r in runs), 3)
            row["hidden_fraction"] = round(statistics.median(r["hidden_fraction"] for r in runs), 3)
        backend = name.split("-")[0]
        if replicas == 1 and backend in ("threads", "mpi"):
            baseline[backend] = ex_s
        if replicas > 1 and backend in baseline:
            row["scaling_efficiency"] = round(ex_s / (replicas * baseline[backend]), 3)
        print(json.dumps(row), flush=True)
        baseline.setdefault("rows", []).append(row)
    single_ex = next(r["examples_per_second"] for r in baseline["rows"] if r["config"] == "single-process")
    for r in baseline["rows"]:
        if r["replicas"] > 1:
            print(json.dumps({"bench": "data_parallel", "config": r["config"], "replicas": r["replicas"],
                              "ratio_vs_single_process_2_threads": round(r["examples_per_second"] / single_ex, 3)}))


if __name__ == "__main__":
    sys.exit(main())
