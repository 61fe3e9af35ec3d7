// The new-job form follows the chosen dataset: only models of the kind its jobs need, only
// the strategies its task offers (the others greyed out with the task's reason), the
// settings its task reads, their per-task placeholders, and the effective batch. The server
// renders the same for the dataset the form opens on and refuses a mismatch anyway; this
// keeps the wrong choices out of reach as the dataset changes.
"use strict";

function setupJobForm() {
  const dataset = document.querySelector('select[name="dataset_id"]');
  const model = document.getElementById("model-select");
  const strategies = document.getElementById("strategy-choice");
  if (!dataset || !model || !strategies) return;
  const notOffered = JSON.parse(strategies.dataset.notOffered);
  const defaults = JSON.parse(strategies.dataset.defaults);
  let lastTask = null;

  const syncModels = (kind) => {
    model.querySelectorAll("optgroup").forEach((group) => {
      const fits = !kind || group.dataset.modality === kind;
      group.disabled = !fits;
      group.hidden = !fits;
    });
    const current = model.selectedOptions[0];
    if (!current || current.parentElement.disabled) {
      const first = model.querySelector("optgroup:not([disabled]) option");
      if (first) { model.value = first.value; model.dispatchEvent(new Event("change", { bubbles: true })); }
    }
  };

  const syncStrategies = (task) => {
    const refused = notOffered[task] || {};
    // Radios (one job) and checkboxes (a comparison) alike: a strategy the task does not
    // offer cannot be picked, and says why.
    document.querySelectorAll("label[data-strategy]").forEach((label) => {
      const reason = refused[label.dataset.strategy];
      const input = label.querySelector("input");
      const note = label.querySelector(".not-offered");
      const wasRefused = input.disabled;
      input.disabled = !!reason;
      if (reason) input.checked = false;
      else if (wasRefused && input.type === "checkbox") input.checked = true; // ticked by default
      if (note) {
        note.hidden = !reason;
        note.textContent = !reason ? "" : input.type === "radio" ? `Not for ${task}: ${reason}` : `: not for ${task}`;
      }
    });
    const picked = strategies.querySelector('input[name="strategy"]:checked');
    // A new task gets its own default (LoRA for generation); a choice that still applies stays.
    if (!picked || (lastTask !== null && lastTask !== task && picked.value === defaults[lastTask])) {
      const fallback = strategies.querySelector(`input[name="strategy"][value="${defaults[task]}"]`);
      if (fallback) fallback.checked = true;
    }
  };

  const syncSettings = (task) => {
    // Settings one task reads (a regression's headline metric, generation's gradient
    // checkpointing) show for that task only; max_length's placeholder is the task's default.
    document.querySelectorAll(".setting[data-tasks]").forEach((el) => {
      el.hidden = !!task && !el.dataset.tasks.split(" ").includes(task);
    });
    document.querySelectorAll("input[data-placeholders]").forEach((input) => {
      const map = JSON.parse(input.dataset.placeholders);
      input.placeholder = map[task] !== undefined ? map[task] : map[""];
    });
  };

  const sync = () => {
    const chosen = dataset.selectedOptions[0];
    const task = chosen ? chosen.dataset.task : null;
    syncModels(chosen ? chosen.dataset.kind : null);
    syncStrategies(task);
    syncSettings(task);
    lastTask = task;
  };
  dataset.addEventListener("change", sync);
  sync();
  setupEffectiveBatch();
}

function setupEffectiveBatch() {
  // Gradient accumulation adds up several batches' gradients before one optimizer step:
  // the effective batch is their product, said beside the setting as it is typed.
  const out = document.getElementById("effective-batch");
  const batch = document.querySelector('input[name="batch_size"]');
  const steps = document.querySelector('input[name="gradient_accumulation"]');
  if (!out || !batch || !steps) return;
  const show = () => {
    const b = parseInt(batch.value || batch.placeholder, 10);
    const s = parseInt(steps.value || steps.placeholder, 10);
    const strong = document.createElement("strong");
    strong.textContent = b > 0 && s > 0 ? `${b} × ${s} = ${b * s}` : "batch size × steps";
    out.replaceChildren("Effective batch: ", strong, " rows per optimizer step.");
  };
  batch.addEventListener("input", show);
  steps.addEventListener("input", show);
  show();
}

document.addEventListener("DOMContentLoaded", setupJobForm);
