"""``python -m bench.video_memory``: reading a long clip costs the memory of its samples, not of the clip.

Writes a synthetic clip (10 minutes of 320x180 H.264 at 24 fps by default: 14,400 frames), then reads it
in a fresh process with Qwen2-VL's default sampling (2 fps, at most 768 frames, whole slices of 2:
``Qwen2VLAdapter.sampling_defaults``) and reports that process's peak resident memory above its
resident memory just before reading, PyAV already imported (Linux ``VmHWM`` / ``VmRSS``), against the kept frames' bytes
(PIL holds RGB at 4 bytes a pixel). The bound it checks: samples + ``BOUND_MIB`` (FFmpeg's decoder
with its threads and reference frames, the demuxer and PyAV's objects), stated in docs/video.md.
A benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BOUND_MIB = 96

_CHILD = r"""
import json, sys, time
import av  # the library's own import (its FFmpeg libraries) is not the clip's cost
from scr_core.video import SamplingDefaults, read_clip

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

defaults = SamplingDefaults(fps=2.0, min_frames=4, max_frames=768, per_slice=2)  # Qwen2-VL's
before = status("VmRSS:")
start = time.perf_counter()
clip = read_clip(sys.argv[1], defaults)
seconds = time.perf_counter() - start
peak = status("VmHWM:")
print(json.dumps({"frames": len(clip.frames), "total_frames": clip.total_frames, "size": list(clip.size),
                  "sample_bytes": sum(f.width * f.height * 4 for f in clip.frames),
                  "rss_before": before, "peak_rss": peak, "read_s": seconds}))
"""


def write_long_clip(path: Path, minutes: float, width: int, height: int, fps: int) -> Path:
    """A moving square, streamed frame by frame into H.264 (never the whole clip in memory)."""
    import av
    import numpy as np

    from scr_core.testbed.clips import moving_square

    loop = moving_square(fps * 4, width, height)  # a 4-second pass of the square, repeated
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(int(minutes * 60 * fps)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(loop[index % len(loop)]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.video_memory", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--size", default="320x180", help="frame WxH (default 320x180)")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        clip = write_long_clip(Path(folder) / "long.mp4", args.minutes, width, height, args.fps)
        write_s = time.perf_counter() - start
        child = subprocess.run([sys.executable, "-c", _CHILD, str(clip)], capture_output=True, text=True, check=True)
        size_mib = clip.stat().st_size / 2**20
    result = json.loads(child.stdout)
    grown = result["peak_rss"] - result["rss_before"]
    bound = result["sample_bytes"] + BOUND_MIB * 2**20
    result.update(minutes=args.minutes, fps=args.fps, file_mib=round(size_mib, 1), write_s=round(write_s, 1),
                  grown_bytes=grown, bound_bytes=bound, within_bound=grown <= bound)
    print(f"{args.minutes:g} min of {width}x{height} at {args.fps} fps ({result['total_frames']} frames, "
          f"{size_mib:.1f} MiB file): {result['frames']} frames sampled in {result['read_s']:.1f} s; "
          f"peak memory +{grown / 2**20:.1f} MiB for {result['sample_bytes'] / 2**20:.1f} MiB of samples "
          f"(bound: samples + {BOUND_MIB} MiB = {bound / 2**20:.1f} MiB): "
          f"{'within' if result['within_bound'] else 'OVER'} the bound")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
