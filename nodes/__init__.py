"""ComfyUI nodes of the SCR pack (V3 schema); see ``definitions.py``.

Only this folder and the top-level ``__init__.py`` import ComfyUI. The pure parts (``convert``,
``paths``) import without it, so they are unit-tested without a ComfyUI install.
"""


async def comfy_entrypoint():
    """What ComfyUI calls to load the pack (V3): the extension listing every node."""
    import comfy.model_management
    import folder_paths

    from scr_core.template_guard import set_interrupt_check

    from .definitions import llm_folders, register_routes
    from .extension import SCRExtension
    from .samples import install_samples

    llm_folders()  # register models/LLM with folder_paths, shared with other packs
    register_routes()
    install_samples(folder_paths.get_input_directory())  # what the shipped workflows caption
    # a chat template rendering in its own process stops on /interrupt (its exception: ComfyUI's own)
    set_interrupt_check(comfy.model_management.throw_exception_if_processing_interrupted)
    return SCRExtension()
