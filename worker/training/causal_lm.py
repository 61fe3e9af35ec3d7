"""A pretrained causal language model (GPT-style: SmolLM2, Llama, Qwen, GPT-2…) as the
strategies see it, for the generation task.

Nothing new is added on top: the model's own language-modelling head writes the answers, so
there is no head to fit on frozen features (transfer_frozen and lp_ft do not apply). What
trains is every weight (finetune_full), the top k decoder blocks with the final norm
(transfer_top_k), or LoRA adapters on every linear projection of the blocks
(finetune_lora, PEFT's "all-linear" choice, which the QLoRA paper found needed to match
full fine-tuning).

The forward reads each row's conversation (chat_tokens.py) and returns, per row, the summed
negative log-likelihood of its answer tokens and their count: a (rows, 2) array that the
generation task turns into the token-weighted loss and perplexity. Only the positions that
predict an answer token go through the output layer: with a 49k-token vocabulary that layer
is a fifth of SmolLM2-135M's work per position, and prompt positions need none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.training.chat_tokens import (
    TokenizedChats,
    load_tokenizer,
    stop_token_ids,
    tokenize_chats,
)
from worker.training.spec import ChatExamples, TrainSpec

# Where a decoder keeps its final norm, by the names transformers gives it.
FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
# Projections LoRA adapts in each block, by architecture family's module names.
LORA_NAMES = (
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),  # Llama…
    ("c_attn", "c_proj", "c_fc"),  # GPT-2
    ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),  # GPT-NeoX
)


class CausalLM:
    def __init__(self, spec: TrainSpec, tokenizer: Any, model: Any, device: torch.device) -> None:
        assert isinstance(spec.examples, ChatExamples)
        self.spec = spec
        self.tokenizer = tokenizer
        self._model = model
        self.device = device
        self.max_length = spec.params.max_length
        self._tokens: TokenizedChats | None = None

    @classmethod
    def load(cls, spec: TrainSpec, device: torch.device) -> CausalLM:
        from transformers import AutoModelForCausalLM

        from worker.training.model_files import check_model_folder

        if Path(spec.model_path).is_dir():
            check_model_folder(spec.model_path)
        tokenizer = load_tokenizer(spec.model_path)
        model = AutoModelForCausalLM.from_pretrained(
            spec.model_path,
            use_safetensors=True,  # never unpickle a checkpoint
            trust_remote_code=False,
            dtype=torch.float32,  # master weights in fp32; CUDA steps autocast to bf16
        )
        model.config.use_cache = False  # training reads whole sequences; no KV cache
        if spec.params.gradient_checkpointing:
            # Recompute each block's activations in backward rather than keep them: about a
            # third more compute for memory that no longer grows with the layers.
            _checkpointing(model, on=True)
        model.to(device)  # type: ignore[arg-type]
        return cls(spec, tokenizer, model, device)

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def output_dir(self) -> Path:
        return self.spec.output_dir

    @property
    def head_modules(self) -> tuple[str, ...]:
        return ()  # the model's own output layer: nothing new to train apart

    @property
    def head_learning_rate(self) -> float | None:
        return None

    @property
    def feature_width(self) -> int:
        raise ValueError("a language model has no head to fit on frozen features")

    def tokens(self) -> TokenizedChats:
        if self._tokens is None:
            assert isinstance(self.spec.examples, ChatExamples)
            self._tokens = tokenize_chats(
                self.tokenizer, self.spec.examples.conversations, self.max_length
            )
        return self._tokens

    def rows(self, *, augment_idx: frozenset[int]) -> TokenizedChats:
        return self.tokens()

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows, 2): each row's summed answer-token NLL and its answer-token count.
        `model` may be a PEFT wrapper: its adapters sit inside self.model's own modules,
        so the decoder called here runs them."""
        ids, mask, learn = batch["input_ids"], batch["attention_mask"], batch["learn"]
        hidden = self._model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        # Position t predicts token t + 1: keep the positions whose next token is learned.
        chosen = learn[:, 1:].bool()
        rows = chosen.nonzero()[:, 0]
        logits = self._model.get_output_embeddings()(hidden[:, :-1][chosen])
        nll = F.cross_entropy(logits.float(), ids[:, 1:][chosen], reduction="none")
        sums = torch.zeros(len(ids), device=nll.device, dtype=nll.dtype).index_add(0, rows, nll)
        return torch.stack([sums, chosen.sum(dim=1).to(sums.dtype)], dim=1)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise ValueError("a language model has no head to fit on frozen features")

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        raise ValueError("a language model has no head to fit on frozen features")

    def feature_identity(self) -> Any:
        return {"max_length": self.max_length}

    def _layers(self) -> tuple[str, nn.ModuleList]:
        """The decoder's block stack: its ModuleList as long as the model is deep."""
        depth = self._model.config.num_hidden_layers
        for name, module in self._model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == depth:
                return name, module
        raise ValueError("cannot find this model's stack of decoder blocks")

    def blocks(self, strategy: str) -> list[tuple[str, ...]]:
        """Decoder blocks bottom to top; the final norm trains with the top block, since it
        reads what that block writes."""
        path, layers = self._layers()
        decoder_path = next(
            n for n, m in self._model.named_modules() if m is self._model.get_decoder()
        )
        decoder = self._model.get_decoder()
        norms = tuple(
            f"{decoder_path}.{name}" if decoder_path else name
            for name in FINAL_NORMS
            if isinstance(getattr(decoder, name, None), nn.Module)
        )
        out: list[tuple[str, ...]] = [(f"{path}.{i}",) for i in range(len(layers))]
        out[-1] = out[-1] + norms
        return out

    def lora_targets(self, strategy: str) -> tuple[list[str], str | None]:
        _, layers = self._layers()
        present = {name.rsplit(".", 1)[-1] for name, m in layers[0].named_modules()}
        for names in LORA_NAMES:
            found = [n for n in names if n in present]
            if found:
                return found, "CAUSAL_LM"
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in layers[0].named_modules() if isinstance(m, nn.Linear)}
        )
        return linear, "CAUSAL_LM"

    def save(self, model: nn.Module, folder: Path) -> None:
        """A transformers folder: weights, tokenizer with its chat template, and a generation
        config that decodes greedily and stops at the chat's end marker, so a plain
        `pipeline("text-generation")` answers as the playground does."""
        saved: Any = model  # a transformers PreTrainedModel, whatever nn.Module says
        saved.config.use_cache = True
        _checkpointing(saved, on=False)  # the saved config must not ask for it
        generation = saved.generation_config
        generation.do_sample = False
        generation.temperature, generation.top_p, generation.top_k = None, None, None
        generation.pad_token_id = self.tokenizer.pad_token_id
        # Every token that ends an answer (the chat's end-of-turn marker too), so the
        # download stops where the playground and the job's own samples do.
        generation.eos_token_id = stop_token_ids(self.tokenizer, generation)
        saved.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    def loading_snippet(self) -> str:
        return """from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
model = AutoModelForCausalLM.from_pretrained("model")
tokenizer = AutoTokenizer.from_pretrained("model")
chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
messages = [{"role": "user", "content": "Your prompt here"}]
print(chat(messages, max_new_tokens=128)[0]["generated_text"][-1]["content"])"""

    def outputs_snippet(self) -> str:
        return self.loading_snippet()


def _checkpointing(model: Any, *, on: bool) -> None:
    """Gradient (activation) checkpointing on or off, by the name this transformers has:
    v5 renamed the methods and warns on the old ones."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
