"""Rendering: Real-ESRGAN enhancement (``esrgan``), its weight converter (``esrgan_convert``) and the MP4 / live
video sinks (``video_out``)."""
