"""Rendering: node classes in ``nodes`` (ESRGAN, ESRGANImage, VideoOut, VideoOutLive); helpers beside them:
``esrgan`` (Real-ESRGAN weights, upscaler, enhancement), ``esrgan_arch`` / ``esrgan_convert`` (the networks and the
weight converter), ``mp4`` (the streaming MP4 writer), ``output_path`` (output file names)."""
