"""The Wav2Lip generator (Prajwal et al., ACM MM 2020), written from the paper's published architecture so that
the official ``wav2lip.pth`` / ``wav2lip_gan.pth`` state dicts load into it key for key.

Input: a mel window (B, 1, 80, 16) and a face (B, 6, 96, 96) = the lower-half-masked face and a reference face;
output: the face (B, 3, 96, 96) in [0, 1], BGR like the training data. This module imports torch at top level;
its name starts with "_" so the node registry does not import it at start-up.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """conv -> batch norm (-> + input) -> ReLU. Keys: conv_block.0 (conv), conv_block.1 (bn)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class UpBlock(nn.Module):
    """transposed conv -> batch norm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _res(ch: int, n: int) -> list[nn.Module]:
    return [ConvBlock(ch, ch, 3, 1, 1, residual=True) for _ in range(n)]


class Wav2Lip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96
            nn.Sequential(ConvBlock(16, 32, 3, 2, 1), *_res(32, 2)),  # 48
            nn.Sequential(ConvBlock(32, 64, 3, 2, 1), *_res(64, 3)),  # 24
            nn.Sequential(ConvBlock(64, 128, 3, 2, 1), *_res(128, 2)),  # 12
            nn.Sequential(ConvBlock(128, 256, 3, 2, 1), *_res(256, 2)),  # 6
            nn.Sequential(ConvBlock(256, 512, 3, 2, 1), *_res(512, 1)),  # 3
            nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1
        ])
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, 32, 3, 1, 1), *_res(32, 2),
            ConvBlock(32, 64, 3, (3, 1), 1), *_res(64, 2),
            ConvBlock(64, 128, 3, 3, 1), *_res(128, 2),
            ConvBlock(128, 256, 3, (3, 2), 1), *_res(256, 1),
            ConvBlock(256, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),
            nn.Sequential(UpBlock(1024, 512, 3, 1, 0), *_res(512, 1)),  # 3
            nn.Sequential(UpBlock(1024, 512, 3, 2, 1, 1), *_res(512, 2)),  # 6
            nn.Sequential(UpBlock(768, 384, 3, 2, 1, 1), *_res(384, 2)),  # 12
            nn.Sequential(UpBlock(512, 256, 3, 2, 1, 1), *_res(256, 2)),  # 24
            nn.Sequential(UpBlock(320, 128, 3, 2, 1, 1), *_res(128, 2)),  # 48
            nn.Sequential(UpBlock(160, 64, 3, 2, 1, 1), *_res(64, 2)),  # 96
        ])
        self.output_block = nn.Sequential(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        skips = []
        f = face
        for block in self.face_encoder_blocks:
            f = block(f)
            skips.append(f)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat([x, skips.pop()], dim=1)
        return self.output_block(x)
