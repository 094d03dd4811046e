#!/usr/bin/python3
"""Prints the SDP offer GStreamer's webrtcbin creates for a publisher.

One VP8 video stream (videotestsrc ! vp8enc ! rtpvp8pay) and one Opus audio
stream (audiotestsrc ! opusenc ! rtpopuspay) are linked into webrtcbin
(bundle-policy=max-bundle, as GStreamer's own WebRTC examples use). In
on-negotiation-needed both transceivers are made sendonly and create-offer is
called; the offer's SDP text, as webrtcbin produced it, is written to stdout.
The GStreamer version is written to stderr as "version: ...".

Needs Debian's python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-plugins-bad,
gstreamer1.0-plugins-good, gstreamer1.0-plugins-base and gstreamer1.0-nice.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=sendonly bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! videoconvert ! queue ! "
    "vp8enc deadline=1 ! rtpvp8pay ! "
    "application/x-rtp,media=video,encoding-name=VP8,payload=96 ! sendonly. "
    "audiotestsrc is-live=true wave=red-noise ! audioconvert ! audioresample ! queue ! "
    "opusenc ! rtpopuspay ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=97 ! sendonly. "
)


def main() -> int:
    Gst.init(None)
    print(f"version: {Gst.version_string()}", file=sys.stderr)
    loop = GLib.MainLoop()
    pipe = Gst.parse_launch(PIPELINE)
    webrtc = pipe.get_by_name("sendonly")
    result = {}

    def on_offer_created(promise, _user_data):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            result["error"] = f"create-offer gave no offer: {reply}"
        else:
            result["sdp"] = offer.sdp.as_text()
        loop.quit()

    def on_negotiation_needed(element):
        if result.get("asked"):
            return
        result["asked"] = True
        # get-transceivers returns a GArray that PyGObject cannot iterate, so
        # walk the indices instead (bounded: this pipeline has two).
        for index in range(16):
            transceiver = element.emit("get-transceiver", index)
            if transceiver is None:
                break
            transceiver.set_property(
                "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY
            )
        promise = Gst.Promise.new_with_change_func(on_offer_created, None)
        element.emit("create-offer", None, promise)

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)

    def on_timeout():
        result["error"] = "no offer within 20 s"
        loop.quit()
        return False

    GLib.timeout_add_seconds(20, on_timeout)
    if pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        print("pipeline failed to start", file=sys.stderr)
        return 1
    loop.run()
    pipe.set_state(Gst.State.NULL)

    if "sdp" not in result:
        print(result.get("error", "no offer"), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(result["sdp"].encode("utf-8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
