"""Helpers shared by the node packages, each defined once: ``audio`` (decoding, one resampler, PCM16 <-> float),
``text`` (language of a text, sentence splitting)."""
