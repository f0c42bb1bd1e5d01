"""The pack's V3 extension: every node it offers, in menu order (the node modules know nothing of it)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .captioning import Caption, CaptionCompare, Diagnose, Settings
from .folder_captions import CaptionFolder
from .folders import LoadImageFolder, SaveCaptions
from .loading import LoadOnnxVLM, LoadVLM

NODES = [LoadVLM, LoadOnnxVLM, Settings, Diagnose, Caption, CaptionCompare, CaptionFolder, LoadImageFolder,
         SaveCaptions]


class SCRExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
