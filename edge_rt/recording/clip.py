"""One clip on disk: H.264 in MP4 with its index up front (a browser plays it while it downloads).

An H.264 source is copied packet for packet; any other codec (MPEG-4 Part 2 from OpenCV's writer,
MJPEG, HEVC, which browsers do not all play) is decoded and encoded with x264 ultrafast, only while
a clip is being written. The file is written under a `.part` name and renamed when complete, so a
reader never opens half a clip.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from .packets import Packet

COPY_CODECS = ("h264",)
PART = ".part"


class ClipWriter:
    """Muxes a clip's packets; timestamps start at 0 and stay monotonic across a reconnect."""

    def __init__(self, path: Path, template: Any, codec: str) -> None:
        import av

        self.path = path
        self.part = path.with_name(path.name + PART)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.part), "w", format="mp4", options={"movflags": "+faststart"})
        self.copy = codec in COPY_CODECS
        if self.copy:
            self._stream = self._out.add_stream_from_template(template)
        else:
            self._decoder = av.CodecContext.create(template.codec_context.name, "r")
            if template.codec_context.extradata:
                self._decoder.extradata = template.codec_context.extradata
            self._rate = template.average_rate or 25
            self._stream = self._out.add_stream("libx264", rate=self._rate)
            self._stream.width = template.codec_context.width
            self._stream.height = template.codec_context.height
            self._stream.pix_fmt = "yuv420p"
            gop = max(1, round(float(self._rate) * 2))  # a keyframe every 2 s to seek by
            self._stream.options = {"preset": "ultrafast", "crf": "23", "x264-params": f"keyint={gop}"}
        self._time_base = template.time_base
        self._offset: int | None = None  # subtracted from every timestamp: the clip starts at 0
        self._generation: int | None = None
        self._last_dts = -1
        self._step = 1
        self.packets = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._started = False
        self._frames = 0  # transcoding: frames numbered at the source's average rate

    def write(self, item: Packet) -> None:
        if not self._started:
            if not item.key:
                return  # a clip starts at a keyframe: before it, nothing decodes
            self._started = True
        pkt = item.packet
        dts = pkt.dts if pkt.dts is not None else pkt.pts
        pts = pkt.pts if pkt.pts is not None else dts
        if self._generation != item.generation:
            # First packet, or the camera came back with timestamps that start over: continue after the last.
            self._offset = dts - (self._last_dts + self._step if self._last_dts >= 0 else 0)
            self._generation = item.generation
        assert self._offset is not None
        new_dts = dts - self._offset
        if new_dts <= self._last_dts:  # a broken stream's repeated timestamps: the muxer refuses them
            return
        if self._last_dts >= 0:
            self._step = max(1, new_dts - self._last_dts)
        self._last_dts = new_dts
        self.first_t = item.t if self.first_t is None else self.first_t
        self.last_t = item.t
        self.packets += 1
        if self.copy:
            pkt.pts, pkt.dts = pts - self._offset, new_dts
            pkt.stream = self._stream
            self._out.mux(pkt)
            return
        pkt.pts, pkt.dts = pts - self._offset, new_dts
        pkt.time_base = self._time_base
        for frame in self._decoder.decode(pkt):
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        import av

        frame.pts, frame.time_base = self._frames, Fraction(1) / self._rate
        frame.pict_type = av.video.frame.PictureType.NONE  # let x264 place its keyframes, not the source's
        self._frames += 1
        for out in self._stream.encode(frame):
            self._out.mux(out)

    def close(self) -> bool:
        """Finish the file and give it its name; False (and nothing left behind) when no packet was written."""
        if not self.copy:
            for frame in self._decoder.decode(None):
                self._encode(frame)
            for out in self._stream.encode(None):
                self._out.mux(out)
        try:
            self._out.close()
        except Exception:
            if self.packets:
                raise
        if not self.packets:
            self.part.unlink(missing_ok=True)
            return False
        self.part.replace(self.path)
        return True

    def abandon(self) -> None:
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - the clip is being thrown away
            pass
        self.part.unlink(missing_ok=True)


def encode_h264(src: Path, dst: Path, gop_s: float = 2.0) -> Path:
    """Re-encode a video file as a camera would send it (H.264, a keyframe every `gop_s`): sources for the
    recording's copy path in demos, benchmarks and tests (`edge-rt dataset clip --h264`)."""
    import av

    with av.open(str(src)) as inp:
        ist = inp.streams.video[0]
        rate = ist.average_rate or 25
        part = dst.with_name(dst.name + PART)
        with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            ost = out.add_stream("libx264", rate=rate)
            ost.width, ost.height, ost.pix_fmt = ist.codec_context.width, ist.codec_context.height, "yuv420p"
            gop = max(1, round(float(rate) * gop_s))  # fixed, as cameras send it: no extra keyframes at scene cuts
            ost.options = {"preset": "veryfast", "bf": "0", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
            for n, frame in enumerate(inp.decode(ist)):
                out_frame = frame.reformat(format="yuv420p")
                out_frame.pts, out_frame.time_base = n, Fraction(1) / rate
                out_frame.pict_type = av.video.frame.PictureType.NONE  # the source's keyframes would force x264's
                for pkt in ost.encode(out_frame):
                    out.mux(pkt)
            for pkt in ost.encode(None):
                out.mux(pkt)
    part.replace(dst)
    return dst
