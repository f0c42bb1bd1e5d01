"""Settings, diagnosis and captioning: SCR Settings, SCR Diagnose (heatmap), VLM Caption and Caption
Compare, each running whatever ``VLM_MODEL`` handle is connected (PyTorch or onnxruntime), on images or
video clips (``media``: an IMAGE batch as one clip, or core ComfyUI's ``VIDEO``)."""

from __future__ import annotations

from comfy_api.latest import io, ui

from scr_core import CAPTION_PROMPT, SCRConfig, SCRError, parse_layer_ranges
from scr_core.config import IDENTITY_LAM
from scr_core.runner import RUNNER_DEFAULT

from .convert import first, pils_to_tensor
from .media import caption_media, label, model_runs
from .shared import (CATEGORY, Choice, Node, SCRPlanType, SCRSettingsType, VLMModel, caption_inputs,
                     caption_instruction, check_caption_values, check_instruction, clip_inputs, generate_inputs,
                     instruction_input, interruptible, preset_note_for, validates)

IMAGE_TIP = "images, or a clip's frames (image_batch_is: one clip); leave it free when a video is connected"


class Settings(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRSettings", display_name="SCR Settings", category=CATEGORY,
            description="Spatial Credit Redistribution settings (defaults: the paper's).",
            inputs=[
                io.Int.Input("k", default=SCRConfig.k, min=1, max=4096, tooltip="source patches per image grid"),
                io.Float.Input("lam", default=SCRConfig.lam, min=IDENTITY_LAM, max=4.0, step=0.01, round=0.001,
                               tooltip="λ: sources × 1/λ, each neighbour + (λ−1)·h_source"),
                io.String.Input("diag_layers", default="", tooltip="e.g. 8-16; blank = the paper's"),
                io.String.Input("hook_layers", default="", tooltip="e.g. 0-11; blank = the family's default"),
                Choice("selection", options=["attention", "uniform"], default="attention",
                       tooltip="uniform = the Uniform-Smooth ablation (random sources)"),
                Choice("query", options=["post_image", "last"], default="post_image",
                       tooltip="which text tokens' attention forms the map"),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="seed of the uniform ablation"),
            ],
            outputs=[SCRSettingsType.Output(display_name="scr_config")],
        )

    @validates
    def validate_inputs(cls, diag_layers="", hook_layers=""):
        for name, text in (("diag_layers", diag_layers), ("hook_layers", hook_layers)):
            try:
                parse_layer_ranges(text)
            except SCRError as err:
                return f"{name}: {err}"
        return True

    @classmethod
    def execute(cls, k, lam, diag_layers, hook_layers, selection, query, seed) -> io.NodeOutput:
        cls.recheck({"k": k, "lam": lam, "selection": selection, "query": query, "seed": seed})
        return io.NodeOutput(SCRConfig(k=k, lam=float(lam), diag_layers=parse_layer_ranges(diag_layers),
                                       hook_layers=parse_layer_ranges(hook_layers), selection=selection,
                                       query=query, seed=seed))


def _instruction(text: str) -> str:
    from scr_core import check_prompt

    return check_prompt(text)


def _heatmaps(images, diagnoses):
    """One heatmap per diagnosis over its prompt's images (``images[i]``); one IMAGE batch when they share a size."""
    from scr_core import render_heatmap

    maps = [render_heatmap(images[i], d) for i, d in enumerate(diagnoses)]
    shapes = {m.shape for m in maps}
    return pils_to_tensor(maps) if len(shapes) == 1 else pils_to_tensor(maps[:1])


def _listed(value):
    """A node's single input as the list a list-input node gets (``None``: not connected)."""
    return None if value is None else [value]


class Diagnose(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRDiagnose", display_name="SCR Diagnose (heatmap)", category=CATEGORY,
            description="The diagnostic pass: where the model's attention collapses, which patches SCR will "
                        "spread it from (red) and to (cyan); a clip's heatmap is a strip of its slices.",
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image", optional=True, tooltip=IMAGE_TIP),
                    io.String.Input("instruction", multiline=True, default=CAPTION_PROMPT),
                    SCRSettingsType.Input("scr_config", optional=True), *clip_inputs()],
            outputs=[SCRPlanType.Output(display_name="scr_plan"), io.Image.Output(display_name="heatmap"),
                     io.Float.Output(display_name="entropy"), io.String.Output(display_name="report")],
        )

    @validates
    def validate_inputs(cls, instruction=None):
        return check_instruction(instruction)

    @classmethod
    def execute(cls, vlm, instruction, image=None, scr_config=None, image_batch_is=None, video=None, frames=None,
                fps=None) -> io.NodeOutput:
        cls.recheck({"image_batch_is": image_batch_is, "frames": frames, "fps": fps})
        with vlm.use() as pipe:
            items = caption_media(pipe, _listed(image), _listed(video), image_batch_is, frames, fps)
            batch = pipe.prepare(list(items), _instruction(instruction))
            diagnoses = pipe.diagnose(batch, config=scr_config or RUNNER_DEFAULT)
        report = "\n".join(_report_line(label(batch.images[i][0], i), d) for i, d in enumerate(diagnoses))
        entropy = sum(d.entropy for d in diagnoses) / len(diagnoses)
        return io.NodeOutput(tuple(d.plan for d in diagnoses), _heatmaps(batch.images, diagnoses), entropy, report,
                             ui=ui.PreviewText(report))


def _report_line(name: str, diagnosis) -> str:
    grids = ", ".join(f"{g.height}x{g.width}: {g.num_sources} sources, {len(g.neighbours)} neighbours"
                      for g in diagnosis.plan.grids)
    return (f"{name}: entropy {diagnosis.entropy:.3f} nats; {grids}; "
            f"λ={diagnosis.plan.lam}, hook layers {diagnosis.plan.hook_layers[0]}-{diagnosis.plan.hook_layers[-1]}")


def _caption_all(pipe, pictures, instruction, scr, max_new_tokens, sample, temperature, top_p, seed, bar,
                 offset=0, total=None, batch_size=4):
    """Caption the pictures ``batch_size`` at a time, fewer when a batch holds more than
    ``SCR_MAX_BATCH_PIXELS`` (any sizes: the processor resizes each, prompts are left-padded), advancing
    ``bar`` by the batch's size every token and stopping within a token on ComfyUI's interrupt. ``scr``: a
    config, ``None``, or a tuple with one plan per picture. Sampling is
    seeded with ``seed`` + the index of the batch's first picture."""
    from transformers import set_seed

    total = total or len(pictures) * max_new_tokens
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if sample else {}
    plans = list(scr) if isinstance(scr, tuple) else None
    if plans is not None and len(plans) != len(pictures):
        raise SCRError(f"the SCR plan holds {len(plans)} plan(s) for {len(pictures)} image(s) or clip(s); diagnose "
                       "the same images you caption (and take them as one clip in both, or in neither)")
    texts = []
    for run in model_runs(pictures, batch_size):
        start, chunk = run.start, pictures[run.start:run.stop]
        done = offset + start * max_new_tokens
        set_seed(seed + start)
        with interruptible() as stop:
            results = pipe.caption(chunk, instruction, scr=plans[start:start + len(chunk)] if plans is not None
                                   else scr, max_new_tokens=max_new_tokens, should_stop=stop,
                                   progress=lambda step, n, done=done, size=len(chunk): bar.update_absolute(  # noqa: B008
                                       done + step * size, total),
                                   **sampling)
        texts.extend(r.text for r in results)
    return texts


class Caption(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaption", display_name="VLM Caption (SCR)", category=CATEGORY,
            description="Caption every image (a batch or a list of any sizes, batch_size at a time) as the preset "
                        "asks, or the frames as one clip, or a video; with SCR when a config or plan is "
                        "connected, else the vanilla model.",
            is_input_list=True, is_output_node=True,
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image", optional=True, tooltip=IMAGE_TIP),
                    instruction_input(),
                    SCRSettingsType.Input("scr_config", optional=True, tooltip="SCR with these settings"),
                    SCRPlanType.Input("scr_plan", optional=True, tooltip="SCR with a diagnosed plan"),
                    *generate_inputs(),
                    io.Boolean.Input("join", default=False, tooltip="one text with a caption per line"),
                    *caption_inputs(), *clip_inputs()],
            outputs=[io.String.Output(display_name="captions", is_output_list=True)],
        )

    @validates
    def validate_inputs(cls, instruction=None, preset=None):
        return check_caption_values(first(preset), first(instruction))

    @classmethod
    def execute(cls, vlm, instruction, max_new_tokens, sample, temperature, top_p, seed, join, image=None,
                scr_config=None, scr_plan=None, preset=None, length=None, batch_size=None, image_batch_is=None,
                video=None, frames=None, fps=None) -> io.NodeOutput:
        import comfy.utils

        cls.recheck({"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                     "preset": preset, "length": length, "batch_size": batch_size,
                     "image_batch_is": image_batch_is, "frames": frames, "fps": fps})
        prompt = caption_instruction(first(preset), first(length), first(instruction))
        if scr_config and scr_plan:
            raise SCRError("connect either scr_config or scr_plan, not both")
        scr = tuple(p for plans in scr_plan for p in plans) if scr_plan else first(scr_config)
        tokens = first(max_new_tokens)
        with first(vlm).use() as pipe:
            pictures = caption_media(pipe, image, video, first(image_batch_is), first(frames), first(fps))
            bar = comfy.utils.ProgressBar(len(pictures) * tokens)
            note = preset_note_for(pipe, prompt)
            texts = _caption_all(pipe, pictures, prompt, scr, tokens, first(sample), first(temperature),
                                 first(top_p), first(seed), bar, batch_size=first(batch_size) or 4)
        out = ["\n".join(texts)] if first(join) else texts
        return io.NodeOutput(out, ui={"text": out + [note] if note else out})  # the note is shown, not output


class CaptionCompare(Node):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SCRCaptionCompare", display_name="Caption Compare: vanilla vs SCR", category=CATEGORY,
            description="Vanilla and SCR captions of the same images or clip (per batch one vision pass and one "
                        "diagnostic pass), side by side, with the heatmap.",
            is_output_node=True,
            inputs=[VLMModel.Input("vlm"), io.Image.Input("image", optional=True, tooltip=IMAGE_TIP),
                    instruction_input(), SCRSettingsType.Input("scr_config", optional=True),
                    io.Int.Input("max_new_tokens", default=64, min=1, max=4096), *caption_inputs(), *clip_inputs()],
            outputs=[io.String.Output(display_name="vanilla", is_output_list=True),
                     io.String.Output(display_name="scr", is_output_list=True),
                     io.String.Output(display_name="side_by_side"), io.Image.Output(display_name="heatmap")],
        )

    @validates
    def validate_inputs(cls, instruction=None, preset=None):
        return check_caption_values(preset, instruction)

    @classmethod
    def execute(cls, vlm, instruction, max_new_tokens, image=None, scr_config=None, preset=None, length=None,
                batch_size=None, image_batch_is=None, video=None, frames=None, fps=None) -> io.NodeOutput:
        import comfy.utils

        cls.recheck({"max_new_tokens": max_new_tokens, "preset": preset, "length": length, "batch_size": batch_size,
                     "image_batch_is": image_batch_is, "frames": frames, "fps": fps})
        prompt = caption_instruction(preset, length, instruction)
        size = batch_size or 4
        vanilla: list[str] = []
        scr: list[str] = []
        images, diagnoses = [], []
        with vlm.use() as pipe:
            pictures = caption_media(pipe, _listed(image), _listed(video), image_batch_is, frames, fps)
            total = 2 * len(pictures) * max_new_tokens
            bar = comfy.utils.ProgressBar(total)
            note = preset_note_for(pipe, prompt)
            for run in model_runs(pictures, size):
                start = run.start
                batch = pipe.prepare(pictures[run.start:run.stop], prompt)
                found = pipe.diagnose(batch, config=scr_config or RUNNER_DEFAULT)
                for phase, (texts, plans) in enumerate(((vanilla, None), (scr, [d.plan for d in found]))):
                    done = (2 * start + phase * batch.batch_size) * max_new_tokens
                    with interruptible() as stop:
                        results = pipe.caption(batch, scr=plans, max_new_tokens=max_new_tokens, should_stop=stop,
                                               progress=lambda s, n, done=done, rows=batch.batch_size:
                                               bar.update_absolute(done + s * rows, total))
                    texts.extend(r.text for r in results)
                images.extend(batch.images)
                diagnoses.extend(found)
        side = "\n\n".join([*(f"{label(images[i][0], i)}\n  vanilla: {v}\n  SCR:     {s}"
                                for i, (v, s) in enumerate(zip(vanilla, scr))),
                            *([note] if note else [])])
        return io.NodeOutput(vanilla, scr, side, _heatmaps(images, diagnoses), ui=ui.PreviewText(side))
