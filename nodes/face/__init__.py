"""The face: one photo -> a talking head (preprocessing, the default animator, Wav2Lip and SadTalker backends).

Heavy libraries (torch, mediapipe, scipy) are imported inside functions: the node registry imports every module
under ``nodes/`` at start-up.
"""
