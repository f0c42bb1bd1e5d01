"""Where the pack may read images from and write captions to: the rules live in
``scr_core.caption_files`` (shared with ``python -m scr_core caption-folder --txt``)."""

from scr_core.caption_files import (_LOADED_IMAGES, IMAGE_PATTERNS, caption_targets, list_images,
                                    safe_subfolder, write_captions)

__all__ = ["_LOADED_IMAGES", "IMAGE_PATTERNS", "caption_targets", "list_images", "safe_subfolder", "write_captions"]
