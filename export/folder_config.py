"""``scr_config.json``, the one file that says what an exported folder holds, as typed frozen records: the
model (its graphs, decoder, layout and processor rules, int4 record), the SCR settings baked into the
graphs (an ``SCRConfig``) and the export's provenance. The exporter builds a ``FolderConfig`` and writes
it (``to_json``); the runtime reads one back (``FolderConfig.from_json``) and reads attributes.

Read, it is checked field by field before onnxruntime opens anything: an exported folder may come from
someone else, so a wrong field is one ``ModelLoadError`` line that names it, a size that would divide by
zero or a negative context is refused here, and a graph name is a plain file name inside the folder (no
absolute path, no ``..``, no separator, no NUL). torch-free (the runtime reads it).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from scr_core import ModelLoadError, SCRConfig, SCRError
from scr_core.config import check_lam_value
from scr_core.errors import ConfigError
from scr_core.layout import RULE_FIELDS, layout_from_rule

from .dtypes import JSON_DTYPES, ExportDtype, for_activations

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; only the type checker reads it (the runtime supports 3.10)

CONFIG_NAME = "scr_config.json"
FORMAT_VERSION = 2  # 2: the processor rule as steps with the adapter's reserved tokens; short_answer_suffix
# (model.quantization, an int4 export's record, is optional: folders without it are fp32/fp16 ones)
EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more weights than this keep them in a .onnx.data file
MAX_NAME = 255
OPTIONAL = {"omit_none": True}  # see optional()
POSITION_RULES = ("sequential", "mrope")  # how the runtime builds position ids (FamilyExport.position_rule)
# the graphs by the runtime's session names, and where each sits under ``model``
GRAPHS = {"vision": ("vision",), "embedding": ("embedding",), "head": ("decoder", "head"), "tail": ("decoder", "tail"),
          "select": ("select",)}


class _Reader:
    """One JSON object of the file and where it sits (``model.decoder``): its fields read one by one, each
    wrong one a ``ModelLoadError`` naming it. ``optional``: an absent or null field reads as None."""

    def __init__(self, tree: dict, where: str, source: Path) -> None:
        self.tree, self.where, self.source = tree, where, source

    def fail(self, key: str, why: str) -> ModelLoadError:
        name = f"{self.where}.{key}" if self.where and key else self.where or key
        return ModelLoadError(f"{self.source}: {name} {why}; export the folder again")

    def value(self, key: str, optional: bool = False):
        if optional:
            return self.tree.get(key)
        if key not in self.tree:
            raise self.fail(key, "is missing")
        return self.tree[key]

    # Each reader typed twice: a required field is never None (``optional`` given only as a keyword).
    @overload
    def section(self, key: str, optional: Literal[False] = False) -> _Reader: ...
    @overload
    def section(self, key: str, optional: bool) -> _Reader | None: ...

    def section(self, key: str, optional: bool = False) -> _Reader | None:
        value = self.value(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a dict (got {value!r:.40})")
        return _Reader(value, f"{self.where}.{key}" if self.where else key, self.source)

    @overload
    def integer(self, key: str, least: int | None = None, optional: Literal[False] = False) -> int: ...
    @overload
    def integer(self, key: str, least: int | None = None, *, optional: bool) -> int | None: ...

    def integer(self, key: str, least: int | None = None, optional: bool = False) -> int | None:
        value = self.value(key, optional)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer (got {value!r:.40})")
        if least is not None and value < least:
            raise self.fail(key, f"must be >= {least} (got {value})")
        return value

    @overload
    def string(self, key: str, choices: tuple[str, ...] = (), optional: Literal[False] = False) -> str: ...
    @overload
    def string(self, key: str, choices: tuple[str, ...] = (), *, optional: bool) -> str | None: ...

    def string(self, key: str, choices: tuple[str, ...] = (), optional: bool = False) -> str | None:
        value = self.value(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a str (got {value!r:.40})")
        if choices and value not in choices:
            raise self.fail(key, f"must be {' or '.join(choices)} (got {value!r:.40})")
        return value

    @overload
    def boolean(self, key: str, optional: Literal[False] = False) -> bool: ...
    @overload
    def boolean(self, key: str, optional: bool) -> bool | None: ...

    def boolean(self, key: str, optional: bool = False) -> bool | None:
        value = self.value(key, optional)
        if not isinstance(value, bool) and not (value is None and optional):
            raise self.fail(key, f"must be a bool (got {value!r:.40})")
        return value

    def number(self, key: str) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a number (got {value!r:.40})")
        return value

    def integers(self, key: str, least: int | None = None, length: int | None = None) -> tuple[int, ...]:
        value = self.value(key)
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise self.fail(key, "must be a list of integers")
        if length is not None and len(value) != length:
            raise self.fail(key, f"must hold {length} integers (got {len(value)})")
        if least is not None and any(v < least for v in value):
            raise self.fail(key, f"must hold integers >= {least} (got {value!r:.40})")
        return tuple(value)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.value(key)
        if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(value)


def optional():
    """A field that is None unless the file has it, and is then left out of the file (not written as null)."""
    return field(default=None, metadata=OPTIONAL)


def _json(value):
    """A record as the file writes it: tuples as lists, ``OPTIONAL`` fields left out when None."""
    if is_dataclass(value):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value) if f.metadata.get("json", True)
                and not (f.metadata.get("omit_none") and getattr(value, f.name) is None)}
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


class _Record:
    def to_json(self) -> dict:
        return _json(self)


@dataclass(frozen=True, kw_only=True)
class Graph(_Record):
    """One ONNX graph of the folder: its file, input and output names, whether its weights are apart."""

    filename: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    external_data: bool | None = optional()  # not recorded for select.onnx

    @classmethod
    def from_record(cls, tree: object, source: Path) -> Self:
        """A graph's record on its own (``export.measure``'s plain decoder), checked as in the folder's file."""
        if not isinstance(tree, dict):
            raise ModelLoadError(f"{source} must hold a JSON object")
        return cls.read(_Reader(tree, "", source))

    @classmethod
    def read(cls, r: _Reader, **extra) -> Self:
        filename = r.value("filename")
        if not isinstance(filename, str) or not filename or len(filename) > MAX_NAME or "\0" in filename \
                or "/" in filename or "\\" in filename or filename in (".", "..") or not filename.endswith(".onnx"):
            raise r.fail("filename", f"must be a plain .onnx file name in the folder (got {filename!r:.60})")
        return cls(filename=filename, inputs=r.strings("inputs"), outputs=r.strings("outputs"),
                   external_data=r.boolean("external_data", optional=True), **extra)


@dataclass(frozen=True, kw_only=True)
class DecoderGraph(Graph):
    """``decoder_head.onnx`` (layers 0 … the last diagnostic layer) or ``decoder_tail.onnx`` (the rest, the LM head)."""

    layers: tuple[int, int]  # first, last (inclusive)
    past_names: tuple[str, ...]
    present_names: tuple[str, ...]
    hook_layers: tuple[int, ...]  # the ai.scr nodes in this part

    @property
    def has_scr(self) -> bool:
        """Whether the part takes the plan (``visual_positions``, ``scr_map``): it holds hook layers."""
        return "scr_map" in self.inputs

    @classmethod
    def read(cls, r: _Reader, **extra) -> DecoderGraph:
        layers = r.integers("layers", least=0, length=2)
        if layers[0] > layers[1]:
            raise r.fail("layers", f"must be [first, last] with first <= last (got {list(layers)})")
        return super().read(r, layers=layers, past_names=r.strings("past_names"),
                            present_names=r.strings("present_names"), hook_layers=r.integers("hook_layers", least=0))


@dataclass(frozen=True, kw_only=True)
class Decoder(_Record):
    """The language model's sizes (the KV cache's shape) and its two parts."""

    head_size: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    past_key_names: str
    past_value_names: str
    present_key_names: str
    present_value_names: str
    head: DecoderGraph
    tail: DecoderGraph
    position_ids: str  # POSITION_RULES

    @classmethod
    def read(cls, r: _Reader) -> Decoder:
        sizes: dict[str, Any] = {key: r.integer(key, least=1) for key in (
            "head_size", "hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers")}
        names: dict[str, Any] = {key: r.string(key) for key in (
            "past_key_names", "past_value_names", "present_key_names", "present_value_names")}
        head, tail = (DecoderGraph.read(r.section(part)) for part in ("head", "tail"))
        for part, spec in (("head", head), ("tail", tail)):
            if spec.layers[1] >= sizes["num_hidden_layers"]:
                raise r.fail(f"{part}.layers", f"reach layer {spec.layers[1]} of a {sizes['num_hidden_layers']}"
                                               "-layer decoder")
        return cls(**sizes, **names, head=head, tail=tail, position_ids=r.string("position_ids", POSITION_RULES))


@dataclass(frozen=True, kw_only=True)
class LayoutRule(_Record):
    """Where a family's processor puts each image's tokens (``scr_core.layout.layout_from_rule``'s data)."""

    kind: str  # scr_core.layout.RULE_FIELDS
    start_token_id: int | None = optional()
    end_token_id: int | None = optional()
    image_token_id: int
    grid: tuple[int, int] | None = optional()
    lead: int | None = optional()
    merge_size: int | None = optional()

    def locate(self, input_ids, image_grid_thw=None):
        """The ``VisualLayout`` of a batch by this rule."""
        return layout_from_rule(self.to_json(), input_ids, image_grid_thw)

    @classmethod
    def of(cls, rule: dict) -> LayoutRule:
        """An adapter's ``layout_rule()``, its image fields only: clips are not exported (the runtime reads
        images), so a rule's video fields (``video_token_id``, ``frames_per_slice``) stay out of the file."""
        known = {f.name for f in fields(cls)}
        found: dict[str, Any] = {key: tuple(value) if key == "grid" else value for key, value in rule.items()
                                 if key in known}
        return cls(**found)

    @classmethod
    def read(cls, r: _Reader) -> LayoutRule:
        kind = r.string("kind", tuple(RULE_FIELDS))
        found: dict[str, Any] = {"kind": kind}
        for key in RULE_FIELDS[kind]:
            found[key] = r.integers(key, least=1, length=2) if key == "grid" \
                else r.integer(key, least=1 if key == "merge_size" else 0)
        if kind == "token_runs":
            found["lead"] = r.integer("lead", least=0, optional=True)
        return cls(**found)


@dataclass(frozen=True, kw_only=True)
class Expand(_Record):
    """The image placeholders expanded by the runtime: ``count`` names the image processor's output that
    sizes each image (``image_grid_thw`` over ``merge_size``², or ``tokens_per_patch`` per tile)."""

    image_token: str
    count: str
    merge_size: int | None = optional()
    tokens_per_patch: int | None = optional()
    prefix: str | None = optional()
    suffix: str | None = optional()

    @classmethod
    def read(cls, r: _Reader) -> Expand:
        count = r.string("count", ("image_grid_thw", "num_patches"))
        size = "merge_size" if count == "image_grid_thw" else "tokens_per_patch"
        return cls(image_token=r.string("image_token"), count=count, **{size: r.integer(size, least=1)},
                   prefix=r.string("prefix", optional=True), suffix=r.string("suffix", optional=True))


@dataclass(frozen=True, kw_only=True)
class VisionGrid(_Record):
    """The vision tower's rotary ids and segments computed on the host (and windows, with ``window_size``)."""

    merge_size: int
    window_size: int | None = optional()
    patch_size: int | None = optional()

    @classmethod
    def read(cls, r: _Reader) -> VisionGrid:
        window = r.integer("window_size", least=1, optional=True)
        return cls(merge_size=r.integer("merge_size", least=1), window_size=window,
                   patch_size=r.integer("patch_size", least=1) if window is not None else None)


@dataclass(frozen=True, kw_only=True)
class ProcessorRule(_Record):
    """How the runtime runs the processor without torch (``export.preprocess.Preprocessor``): the folder's
    ``AutoProcessor`` unless ``expand`` says how to expand the image placeholders by hand."""

    backend: str = "pil"
    reserved_tokens: tuple[str, ...]
    expand: Expand | None = optional()
    vision_grid: VisionGrid | None = optional()
    image_kwargs: Mapping | None = optional()
    chat_template: str | None = optional()

    @classmethod
    def read(cls, r: _Reader) -> ProcessorRule:
        expand, grid, kwargs = (r.section(key, optional=True) for key in ("expand", "vision_grid", "image_kwargs"))
        return cls(backend=r.string("backend", optional=True) or "pil", reserved_tokens=r.strings("reserved_tokens"),
                   expand=None if expand is None else Expand.read(expand),
                   vision_grid=None if grid is None else VisionGrid.read(grid),
                   image_kwargs=None if kwargs is None else kwargs.tree,
                   chat_template=r.string("chat_template", optional=True))


@dataclass(frozen=True, kw_only=True)
class Quantization(_Record):
    """An int4 export's record (``export/quantize.py``): what was quantized and how."""

    bits: int
    block_size: int
    symmetric: bool
    accuracy_level: int
    parts: tuple[str, ...]
    op: str

    @classmethod
    def read(cls, r: _Reader) -> Quantization:
        if r.integer("bits") not in (2, 4, 8):
            raise r.fail("bits", "must be 2, 4 or 8")
        return cls(bits=r.integer("bits"), block_size=r.integer("block_size", least=1),
                   symmetric=r.boolean("symmetric"), accuracy_level=r.integer("accuracy_level"),
                   parts=r.strings("parts"), op=r.string("op"))


@dataclass(frozen=True, kw_only=True)
class Model(_Record):
    """The exported model: its tokens, context, dtype (``dtypes.JSON_DTYPES``) and graphs."""

    type: str
    image_token_id: int
    context_length: int | None  # written as null when the checkpoint does not say
    short_answer_suffix: str
    eos_token_id: tuple[int, ...]
    pad_token_id: int
    dtype: str
    vision: Graph
    embedding: Graph
    decoder: Decoder
    select: Graph
    layout: LayoutRule
    processor: ProcessorRule
    quantization: Quantization | None = optional()

    @classmethod
    def read(cls, r: _Reader) -> Model:
        quantization = r.section("quantization", optional=True)
        return cls(type=r.string("type"), image_token_id=r.integer("image_token_id"),
                   context_length=r.integer("context_length", least=1, optional=True),
                   short_answer_suffix=r.string("short_answer_suffix"), eos_token_id=r.integers("eos_token_id"),
                   pad_token_id=r.integer("pad_token_id"), dtype=r.string("dtype", JSON_DTYPES),
                   vision=Graph.read(r.section("vision")), embedding=Graph.read(r.section("embedding")),
                   decoder=Decoder.read(r.section("decoder")), select=Graph.read(r.section("select")),
                   layout=LayoutRule.read(r.section("layout")), processor=ProcessorRule.read(r.section("processor")),
                   quantization=None if quantization is None else Quantization.read(quantization))

    @property
    def export_dtype(self) -> ExportDtype:
        """The row of ``dtypes.EXPORT_DTYPES`` this export was made with."""
        row = for_activations(self.dtype, quantized=self.quantization is not None)
        assert row is not None  # dtype is one of JSON_DTYPES, each exported with and without int4 weights
        return row

    def graphs(self) -> dict[str, Graph]:
        """The graphs by the runtime's session names."""
        return {name: cast(Graph, functools.reduce(getattr, keys, self)) for name, keys in GRAPHS.items()}


@dataclass(frozen=True, kw_only=True)
class Provenance(_Record):
    """What made the export: the opset and IR version of its graphs and the packages' versions."""

    opset: int
    ir_version: int
    torch: str
    transformers: str
    onnx: str
    onnxruntime: str
    python: str

    @classmethod
    def read(cls, r: _Reader) -> Provenance:
        return cls(opset=r.integer("opset"), ir_version=r.integer("ir_version"),
                   **{key: r.string(key) for key in ("torch", "transformers", "onnx", "onnxruntime", "python")})


def _read_scr(r: _Reader) -> SCRConfig:
    """The settings baked into the graphs (``scr``), as the runner's ``SCRConfig``."""
    k, lam = r.integer("k", least=1), r.number("lam")
    try:
        check_lam_value(lam)  # the one lower bound of any λ (also refuses NaN and inf)
    except ConfigError:
        raise r.fail("lam", "must be a finite number > 0") from None
    diag, hooks = r.integers("diag_layers", least=0), r.integers("hook_layers", least=0)
    query = cast(Literal["post_image", "last"],  # the choices checked
                 r.string("query", ("post_image", "last"), optional=True) or "post_image")
    try:
        return SCRConfig(k=k, lam=float(lam), diag_layers=diag, hook_layers=hooks, query=query,
                         exclude_border=r.boolean("exclude_border"))
    except SCRError as err:
        raise r.fail("", f"holds settings SCRConfig refuses ({err})") from None


@dataclass(frozen=True, kw_only=True)
class FolderConfig:
    """An exported folder's ``scr_config.json``. ``paths``: the graphs' files (by session name), filled by
    ``from_json`` once each is checked to be a plain file inside the folder."""

    model: Model
    scr: SCRConfig  # the settings baked into the graphs (λ, layers, query, border) and the default K
    scr_opset: Mapping[str, int]  # the ai.scr domain's version the graphs use (scr.opset_import)
    export: Provenance
    format_version: int = FORMAT_VERSION
    paths: Mapping[str, Path] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict:
        scr = self.scr
        assert scr.diag_layers is not None and scr.hook_layers is not None  # baked settings name their layers
        return {"format_version": self.format_version, "model": self.model.to_json(),
                "scr": {"k": scr.k, "lam": scr.lam, "diag_layers": list(scr.diag_layers),
                        "hook_layers": list(scr.hook_layers), "query": scr.query,
                        "exclude_border": scr.exclude_border, "opset_import": dict(self.scr_opset)},
                "export": self.export.to_json()}

    def write(self, folder: Path) -> Path:
        """``folder/scr_config.json``."""
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, folder: str | Path) -> FolderConfig:
        """The config of an exported folder, or one ``ModelLoadError`` line: not a folder made by
        ``python -m export.onnx``, unreadable, another format version, or a field that is wrong."""
        folder = Path(folder)
        tree, source = _load(folder)
        if tree.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(f"{source} has format version {tree.get('format_version')!r}; this runtime reads "
                                 f"version {FORMAT_VERSION}: export the folder again with this version")
        top = _Reader(tree, "", source)
        model, scr = Model.read(top.section("model")), top.section("scr")
        opset = scr.value("opset_import")
        if not isinstance(opset, dict) or any(isinstance(v, bool) or not isinstance(v, int) for v in opset.values()):
            raise scr.fail("opset_import", "must map op domains to integer versions")
        paths = {name: _inside(folder, graph.filename, source, ".".join(("model", *GRAPHS[name])))
                 for name, graph in model.graphs().items()}
        return cls(model=model, scr=_read_scr(scr), scr_opset=opset, export=Provenance.read(top.section("export")),
                   paths=paths)


def _load(folder: Path) -> tuple[dict, Path]:
    """(the parsed file, its path), or one ``ModelLoadError`` line."""
    source = folder / CONFIG_NAME
    try:
        found = source.is_file()
    except (OSError, ValueError) as err:  # a name too long for the file system, a NUL
        raise ModelLoadError(f"cannot use {str(folder)[:80]!r} as an exported folder: "
                             f"{getattr(err, 'strerror', None) or err}") from None
    if not found:
        raise ModelLoadError(f"{folder} is not an exported SCR folder (no {CONFIG_NAME}); "
                             "make one with python -m export.onnx --out FOLDER")
    try:
        tree = json.loads(source.read_text())
        tree["model"], tree["scr"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{source} is unreadable or incomplete ({err!s:.200}); export the folder "
                             "again") from None
    return tree, source


def _inside(folder: Path, name: str, source: Path, where: str) -> Path:
    """``folder / name``, refused where it leads outside ``folder`` (a symlink)."""
    path = folder / name
    try:
        inside = path.resolve().parent == folder.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise ModelLoadError(f"{source}: {where}.filename ({name!r}) leads outside {folder}; export the folder again")
    return path


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an SCR export of any format version (a ``scr_config.json`` object with
    ``format_version``, ``model`` and ``scr``): what ``--overwrite`` may replace."""
    try:
        tree, _ = _load(Path(folder))
    except SCRError:
        return False
    return isinstance(tree.get("format_version"), int) and all(isinstance(tree.get(k), dict) for k in ("model", "scr"))
