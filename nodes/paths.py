"""Where the pack may read images from and write captions to: the rules live in
``scr_core.caption_files`` and ``scr_core.allowed`` (shared with ``python -m scr_core caption-folder --txt``)."""

from scr_core.caption_files import (IMAGE_PATTERNS, CaptionWrites, caption_targets, list_images, safe_subfolder,
                                    write_caption_files, write_captions)

__all__ = ["IMAGE_PATTERNS", "CaptionWrites", "caption_targets", "list_images", "safe_subfolder",
           "write_caption_files", "write_captions"]
