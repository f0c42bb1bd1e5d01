"""ComfyUI nodes of the SCR pack (V3 schema): ``extension.py`` lists them; ``loading``, ``captioning`` and
``folders``/``folder_captions`` hold them by theme, ``shared`` what they share (``media``: images or clips
to caption), ``model_folders`` where models come from.

Only this folder and the top-level ``__init__.py`` import ComfyUI. The pure parts (``convert``,
``checks``, ``handle``) import without it, so they are unit-tested without a ComfyUI install.
"""


async def comfy_entrypoint():
    """What ComfyUI calls to load the pack (V3): the extension listing every node."""
    import comfy.model_management
    import folder_paths

    from scr_core.template_guard import set_interrupt_check

    from .download import remove_stale_downloads
    from .extension import SCRExtension
    from .handle import register_routes
    from .model_folders import llm_folders
    from .samples import install_samples

    remove_stale_downloads(llm_folders())  # registers models/LLM with folder_paths (shared with other packs) too
    register_routes()
    install_samples(folder_paths.get_input_directory())  # what the shipped workflows caption
    # a chat template rendering in its own process stops on /interrupt (its exception: ComfyUI's own)
    set_interrupt_check(comfy.model_management.throw_exception_if_processing_interrupted)
    return SCRExtension()
