"""The peer methods of mitigv (VCD, ICD, PAI, M3ID, VISTA, AGLA, ONLY, OPERA), answered for eval's runner.

Why mitigv: one maintained implementation of eight training-free mitigation methods behind one
``generate`` call, each at its paper's default settings, so ``compare`` can put SCR beside all of them.
The runner gives them what it gives SCR: the same tasks (prompt, image, max_new_tokens), greedy
decoding (OPERA: its own beam search, 5 beams, as in its paper), resume and per-task latency.

* Same prompts: mitigv builds each prompt with the checkpoint's chat template, as our adapters do;
  every prompt is checked to come out as ``Adapter.format_prompt`` makes it, else the run stops with
  one line (nothing is scored under another prompt).
* One prompt at a time: mitigv 0.1.7 runs OPERA only at batch size 1, and PAI fails on padded batches.
* Workarounds for mitigv 0.1.7 on transformers 5 (in ``_adapters``; worth reporting upstream):
  PAI, VISTA, AGLA, ONLY and OPERA look for the decoder one level too shallow
  (``model.language_model``; transformers 5 keeps it at ``model.model.language_model``), so the
  mitigv adapter is handed our adapter's decoder as ``language_model``; on Qwen2.5-VL, PAI and ONLY
  look for ``config.image_token_index`` (Qwen's config calls it ``image_token_id``), so the mitigv
  adapter gets a copy of the config with that name added (the model's own config is untouched).
* No hooks left behind: asking for hidden states or attentions makes transformers install its own
  recording hooks on the model for good (mitigv's VCD and VISTA do); each call removes the hooks it
  added and transformers' "installed" marks, so the model is as it was (``_model_as_it_was``).
* Not run: VISTA, AGLA and OPERA on Qwen2.5-VL (mitigv calls Qwen's vision tower without its grid,
  or expands Qwen's flat patch tensor per beam) and every family but LLaVA and Qwen2.5-VL: refused
  before any work, in one line.

``vcd`` stays our own (``baselines.generate_vcd``): the same paper defaults as mitigv's (α = 1,
β = 0.1, diffusion noise at step 500 of 1000, the same schedule), but it runs on every family, in
batches, through transformers' ``generate``; mitigv's is here as ``vcd-mitigv`` to cross-check it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import ConfigError
from ..extras import require

MITIGV_VERSION = "0.1.7"  # the release the workarounds below were written against (requirements-peers.txt)
# --method name -> mitigv algorithm name
PEERS = {"vcd-mitigv": "vcd", "icd": "icd", "pai": "pai", "m3id": "m3id", "vista": "vista", "agla": "agla",
         "only": "only", "opera": "opera"}
# config.model_type -> (mitigv's family name, the methods it runs there)
FAMILIES = {
    "llava": ("llava", tuple(PEERS)),
    "qwen2_5_vl": ("qwen2.5-vl", ("vcd-mitigv", "icd", "pai", "m3id", "only")),
}
_NAMES = {"vcd-mitigv": "VCD", "icd": "ICD", "pai": "PAI", "m3id": "M3ID", "vista": "VISTA", "agla": "AGLA",
          "only": "ONLY", "opera": "OPERA"}


def check_family(model_type: str, method: str) -> None:
    """ConfigError (one line) unless mitigv runs ``method`` on models of ``model_type``."""
    supported = FAMILIES.get(model_type, (None, ()))[1]
    if method not in supported:
        where = [t for t, (_, methods) in FAMILIES.items() if method in methods]
        raise ConfigError(f"--method {method}: mitigv {MITIGV_VERSION} does not run {_NAMES[method]} on "
                          f"{model_type} models (it runs on: {', '.join(where)})")


def settings(method: str) -> dict:
    """What the run records: mitigv's version and the algorithm's settings (its defaults)."""
    require("peers", f"--method {method}")
    import mitigv

    config = mitigv.get_mitigator_class(PEERS[method]).config_class().to_dict()
    for key in ("max_new_tokens", "seed"):  # set per task by the runner
        config.pop(key, None)
    return {"library": f"mitigv {mitigv.__version__}", "algorithm": PEERS[method], "settings": config}


class PeerGenerator:
    """Answers prompts with one mitigv method on a loaded ``SCRPipeline`` (its model and processor)."""

    def __init__(self, pipe, method: str, seed: int = 0) -> None:
        require("peers", f"--method {method}")
        model_type = pipe.model.config.model_type
        check_family(model_type, method)
        import mitigv

        self.pipe, self.seed = pipe, seed
        model, self.processor = _adapters(pipe, FAMILIES[model_type][0])
        self.mitigator = mitigv.load_mitigator(PEERS[method], model=model, processor=self.processor)

    def __call__(self, images: Sequence, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        from ..images import group_images

        texts = []
        for group, prompt in zip(group_images(list(images)), prompts):
            self._check_prompt(prompt, group)
            with _model_as_it_was(self.pipe.model):
                out = self.mitigator.generate(group, [prompt], max_new_tokens=max_new_tokens, seed=self.seed)
            texts.append((out[0] if isinstance(out, list) else out).strip())
        return texts

    def _check_prompt(self, prompt: str, images: list) -> None:
        ours = self.pipe.adapter.format_prompt(prompt, len(images))
        theirs = self.processor._prepare_text(prompt, images)
        if theirs != ours:
            raise ConfigError(f"mitigv would ask {theirs!r} where SCR asks {ours!r}; the peers run only where "
                              "the prompts are the same")


def _adapters(pipe, family: str):
    """mitigv's adapters for the pipeline's model and processor, with the workarounds of the docstring."""
    from mitigv.backends.factory import adapt_vision_language

    model, processor = adapt_vision_language(family, pipe.model, pipe.processor)
    model.language_model = pipe.adapter.language_model()  # the decoder stack, where mitigv looks for .layers
    config = pipe.model.config
    if getattr(config, "image_token_index", None) is None and getattr(config, "image_token_id", None) is not None:
        model.config = copy.copy(config)
        model.config.image_token_index = config.image_token_id
    return model, processor


_INSTALLED_MARK = "_output_capturing_hooks_installed"  # transformers' "recording hooks are in place" flag


@contextmanager
def _model_as_it_was(model) -> Iterator[None]:
    """Remove every forward hook added to ``model``'s modules inside the block, and transformers' marks
    that its recording hooks are installed (so it installs them again when it next needs them)."""
    modules = list(model.modules())
    hooks = [(set(m._forward_hooks), set(m._forward_pre_hooks)) for m in modules]
    marks = [m.__dict__.get(_INSTALLED_MARK) for m in modules]
    try:
        yield
    finally:
        for module, (post, pre), mark in zip(modules, hooks, marks):
            for key in set(module._forward_hooks) - post:
                del module._forward_hooks[key]
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)
            for key in set(module._forward_pre_hooks) - pre:
                del module._forward_pre_hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
            if mark is None:
                module.__dict__.pop(_INSTALLED_MARK, None)
            else:
                module.__dict__[_INSTALLED_MARK] = mark
