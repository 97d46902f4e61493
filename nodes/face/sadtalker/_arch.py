"""SadTalker's inference networks (Zhang et al., CVPR 2023), written from the published architecture so that the
official checkpoints load key for key:

* ``ExpNet`` (audio2exp): a Wav2Lip-style audio encoder + one linear layer -> 64 expression coefficients per
  frame, conditioned on the reference expression and a blink ratio;
* ``PoseNet`` (audio2pose): the same audio encoder + a conditional VAE decoder (MLP, ResUnet) -> head-pose
  motion (3 angles, 3 translations) per 32-frame window, with a pose-style class bias;
* ``MappingNet``: a window of 27 frames of 70 coefficients -> head pose bins, translation, keypoint deltas;
* ``KPDetector`` and ``OcclusionAwareSPADEGenerator`` (face-vid2vid style renderer): 15 canonical 3D keypoints,
  a dense 3D motion field and a SPADE decoder;
* ``ReconNet``: a ResNet-50 with seven 1x1 heads -> 257 3DMM coefficients of the source face (Deep3DFaceRecon).

Imports torch at top level; its name starts with "_" so the node registry does not import it at start-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

# ------------------------------------------------------------------------------------------------ audio


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k, s, p, residual=False, act=True):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual
        self.use_act = act

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out) if self.use_act else out


def audio_encoder() -> nn.Sequential:
    """Wav2Lip's audio encoder: (B, 1, 80, 16) mel window -> (B, 512, 1, 1)."""
    r = lambda c: ConvBN(c, c, 3, 1, 1, residual=True)  # noqa: E731
    return nn.Sequential(
        ConvBN(1, 32, 3, 1, 1), r(32), r(32),
        ConvBN(32, 64, 3, (3, 1), 1), r(64), r(64),
        ConvBN(64, 128, 3, 3, 1), r(128), r(128),
        ConvBN(128, 256, 3, (3, 2), 1), r(256),
        ConvBN(256, 512, 3, 1, 0), ConvBN(512, 512, 1, 1, 0),
    )


class ExpNet(nn.Module):
    """audio2exp's generator (keys: audio_encoder.*, mapping1.*)."""

    def __init__(self):
        super().__init__()
        self.audio_encoder = audio_encoder()
        self.mapping1 = nn.Linear(512 + 64 + 1, 64)

    def forward(self, mel, ref, ratio):
        """mel (B*T, 1, 80, 16), ref (B, T, 64), ratio (B, T, 1) -> (B, T, 64)."""
        x = self.audio_encoder(mel).view(mel.size(0), -1)
        y = self.mapping1(torch.cat([x, ref.reshape(x.size(0), -1), ratio.reshape(x.size(0), -1)], dim=1))
        return y.reshape(ref.shape[0], ref.shape[1], -1)


class ResidualConv(nn.Module):
    def __init__(self, cin, cout, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, padding),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.conv_skip = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.conv_block(x) + self.conv_skip(x)


class Upsample(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(cin, cout, kernel_size=kernel, stride=stride)

    def forward(self, x):
        return self.upsample(x)


class ResUnet(nn.Module):
    def __init__(self, channel=1, filters=(32, 64, 128, 256)):
        super().__init__()
        f = filters
        self.input_layer = nn.Sequential(nn.Conv2d(channel, f[0], 3, padding=1), nn.BatchNorm2d(f[0]), nn.ReLU(),
                                         nn.Conv2d(f[0], f[0], 3, padding=1))
        self.input_skip = nn.Sequential(nn.Conv2d(channel, f[0], 3, padding=1))
        self.residual_conv_1 = ResidualConv(f[0], f[1], (2, 1), 1)
        self.residual_conv_2 = ResidualConv(f[1], f[2], (2, 1), 1)
        self.bridge = ResidualConv(f[2], f[3], (2, 1), 1)
        self.upsample_1 = Upsample(f[3], f[3], (2, 1), (2, 1))
        self.up_residual_conv1 = ResidualConv(f[3] + f[2], f[2], 1, 1)
        self.upsample_2 = Upsample(f[2], f[2], (2, 1), (2, 1))
        self.up_residual_conv2 = ResidualConv(f[2] + f[1], f[1], 1, 1)
        self.upsample_3 = Upsample(f[1], f[1], (2, 1), (2, 1))
        self.up_residual_conv3 = ResidualConv(f[1] + f[0], f[0], 1, 1)
        self.output_layer = nn.Sequential(nn.Conv2d(f[0], 1, 1, 1), nn.Sigmoid())

    def forward(self, x):
        x1 = self.input_layer(x) + self.input_skip(x)
        x2 = self.residual_conv_1(x1)
        x3 = self.residual_conv_2(x2)
        x4 = self.upsample_1(self.bridge(x3))
        x6 = self.upsample_2(self.up_residual_conv1(torch.cat([x4, x3], 1)))
        x8 = self.upsample_3(self.up_residual_conv2(torch.cat([x6, x2], 1)))
        return self.output_layer(self.up_residual_conv3(torch.cat([x8, x1], 1)))


class PoseDecoder(nn.Module):
    """The CVAE decoder of audio2pose (keys under netG.decoder.*)."""

    def __init__(self, layer_sizes=(128, 192), latent=64, num_classes=46, audio_in=512, audio_out=6, seq_len=32):
        super().__init__()
        self.resunet = ResUnet()
        self.seq_len = seq_len
        self.MLP = nn.Sequential()
        sizes = [latent + seq_len * audio_out + 6, *layer_sizes]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.MLP.add_module(f"L{i}", nn.Linear(a, b))
            self.MLP.add_module(f"A{i}" if i + 2 < len(sizes) else "sigmoid",
                                nn.ReLU() if i + 2 < len(sizes) else nn.Sigmoid())
        self.pose_linear = nn.Linear(6, 6)
        self.linear_audio = nn.Linear(audio_in, audio_out)
        self.classbias = nn.Parameter(torch.randn(num_classes, latent))

    def forward(self, z, class_id, ref, audio_emb):
        bs = z.shape[0]
        audio = self.linear_audio(audio_emb).reshape(bs, -1)
        x = self.MLP(torch.cat([ref, z + self.classbias[class_id], audio], dim=-1)).reshape(bs, self.seq_len, -1)
        return self.pose_linear(self.resunet(x.unsqueeze(1)).squeeze(1))  # (bs, seq_len, 6)


class PoseEncoder(nn.Module):
    """The CVAE encoder (used in training only; present in the checkpoint, loaded for key checking)."""

    def __init__(self, layer_sizes=(192, 128), latent=64, num_classes=46, audio_in=512, audio_out=6, seq_len=32):
        super().__init__()
        self.resunet = ResUnet()
        self.MLP = nn.Sequential()
        sizes = [layer_sizes[0] + latent + seq_len * audio_out + 6, *layer_sizes[1:]]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.MLP.add_module(f"L{i}", nn.Linear(a, b))
            self.MLP.add_module(f"A{i}", nn.ReLU())
        self.linear_means = nn.Linear(sizes[-1], latent)
        self.linear_logvar = nn.Linear(sizes[-1], latent)
        self.linear_audio = nn.Linear(audio_in, audio_out)
        self.classbias = nn.Parameter(torch.randn(num_classes, latent))


class CVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = PoseEncoder()
        self.decoder = PoseDecoder()


class AudioEncoderWrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.audio_encoder = audio_encoder()

    def forward(self, mels):
        """(B, T, 1, 80, 16) -> (B, T, 512)."""
        b, t = mels.shape[:2]
        return self.audio_encoder(mels.reshape(b * t, *mels.shape[2:])).reshape(b, t, 512)


class PoseNet(nn.Module):
    """audio2pose (keys: audio_encoder.audio_encoder.*, netG.encoder.*, netG.decoder.*; netD_motion.* unused)."""

    seq_len = 32
    latent = 64

    def __init__(self):
        super().__init__()
        self.audio_encoder = AudioEncoderWrapper()
        self.netG = CVAE()

    def forward(self, mels, ref_pose, class_id, generator=None):
        """mels (1, T, 1, 80, 16) for frames 1..T, ref_pose (1, 6) -> pose motion (1, T, 6), in 32-frame windows."""
        n = mels.shape[1]
        out = []
        for start in range(0, n, self.seq_len):
            window = mels[:, start:start + self.seq_len]
            if window.shape[1] < self.seq_len:  # the last, short window: SadTalker re-reads the tail and pads
                window = mels[:, -self.seq_len:]
                if window.shape[1] < self.seq_len:
                    pad = window[:, :1].repeat(1, self.seq_len - window.shape[1], 1, 1, 1)
                    window = torch.cat([pad, window], 1)
                keep = n - start
            else:
                keep = self.seq_len
            z = torch.randn(1, self.latent, generator=generator).to(mels.device)
            motion = self.netG.decoder(z, class_id, ref_pose, self.audio_encoder(window))
            out.append(motion[:, -keep:])
        return torch.cat(out, 1)


# ------------------------------------------------------------------------------------------------ renderer


def coordinate_grid(d, h, w, device, dtype):
    z, y, x = (torch.linspace(-1, 1, n, device=device, dtype=dtype) for n in (d, h, w))
    zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
    return torch.stack([xx, yy, zz], -1)  # (d, h, w, 3)


def kp2gaussian(kp, spatial, variance):
    grid = coordinate_grid(*spatial, kp.device, kp.dtype)
    diff = grid.view(1, 1, *grid.shape) - kp.view(*kp.shape[:2], 1, 1, 1, 3)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


class ResBottleneck(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c // 4, 1)
        self.conv2 = nn.Conv2d(c // 4, c // 4, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(c // 4, c, 1)
        self.norm1, self.norm2, self.norm3 = nn.BatchNorm2d(c // 4), nn.BatchNorm2d(c // 4), nn.BatchNorm2d(c)
        self.stride = stride
        if stride != 1:
            self.skip = nn.Conv2d(c, c, 1, stride=stride)
            self.norm4 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        if self.stride != 1:
            x = self.norm4(self.skip(x))
        return F.relu(out + x)


class ResBlock3d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv3d(c, c, 3, padding=1)
        self.conv2 = nn.Conv3d(c, c, 3, padding=1)
        self.norm1, self.norm2 = nn.BatchNorm3d(c), nn.BatchNorm3d(c)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


class UpBlock3d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=(1, 2, 2)))))


class DownBlock2d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(F.relu(self.norm(self.conv(x))))


class DownBlock3d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)
        self.pool = nn.AvgPool3d((1, 2, 2))

    def forward(self, x):
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    def __init__(self, cin, cout, lrelu=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.ac = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x):
        return self.ac(self.norm(self.conv(x)))


class KPHourglass(nn.Module):
    def __init__(self, be, cin, reshape_features, reshape_depth, num_blocks, max_features):
        super().__init__()
        self.down_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.down_blocks.add_module(f"down{i}", DownBlock2d(cin if i == 0 else min(max_features, be * 2 ** i),
                                                                min(max_features, be * 2 ** (i + 1))))
        self.conv = nn.Conv2d(min(max_features, be * 2 ** num_blocks), reshape_features, 1)
        self.up_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.up_blocks.add_module(f"up{i}", UpBlock3d(min(max_features, be * 2 ** (num_blocks - i)),
                                                          min(max_features, be * 2 ** (num_blocks - i - 1))))
        self.reshape_depth = reshape_depth
        self.out_filters = min(max_features, be * 2 ** 0)

    def forward(self, x):
        out = self.conv(self.down_blocks(x))
        bs, c, h, w = out.shape
        return self.up_blocks(out.view(bs, c // self.reshape_depth, self.reshape_depth, h, w))


class AntiAliasDown(nn.Module):
    def __init__(self, channels, scale):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        g = torch.arange(size, dtype=torch.float32)
        k1 = torch.exp(-(g - (size - 1) / 2) ** 2 / (2 * sigma ** 2))
        kernel = k1[:, None] * k1[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.step = int(1 / scale)

    def forward(self, x):
        out = F.conv2d(F.pad(x, (self.ka, self.kb, self.ka, self.kb)), self.weight, groups=self.groups)
        return out[:, :, ::self.step, ::self.step]


class KPDetector(nn.Module):
    def __init__(self, block_expansion=32, feature_channel=32, num_kp=15, image_channel=3, max_features=1024,
                 reshape_channel=16384, reshape_depth=16, num_blocks=5, temperature=0.1, scale_factor=0.25):
        super().__init__()
        self.predictor = KPHourglass(block_expansion, image_channel, reshape_channel, reshape_depth, num_blocks,
                                     max_features)
        self.kp = nn.Conv3d(self.predictor.out_filters, num_kp, 3, padding=1)
        self.temperature = temperature
        self.down = AntiAliasDown(image_channel, scale_factor)

    def forward(self, x):
        pred = self.kp(self.predictor(self.down(x)))
        shape = pred.shape
        heat = F.softmax(pred.view(shape[0], shape[1], -1) / self.temperature, dim=2).view(*shape)
        grid = coordinate_grid(*shape[2:], x.device, x.dtype)
        return (heat.unsqueeze(-1) * grid).sum(dim=(2, 3, 4))  # (bs, num_kp, 3)


class Hourglass3d(nn.Module):
    def __init__(self, be, cin, num_blocks, max_features):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList(
            DownBlock3d(cin if i == 0 else min(max_features, be * 2 ** i), min(max_features, be * 2 ** (i + 1)))
            for i in range(num_blocks))
        self.decoder = nn.Module()
        ups = []
        for i in range(num_blocks)[::-1]:
            fin = (1 if i == num_blocks - 1 else 2) * min(max_features, be * 2 ** (i + 1))
            ups.append(UpBlock3d(fin, min(max_features, be * 2 ** i)))
        self.decoder.up_blocks = nn.ModuleList(ups)
        self.out_filters = be + cin
        self.decoder.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, x):
        outs = [x]
        for block in self.encoder.down_blocks:
            outs.append(block(outs[-1]))
        out = outs.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), outs.pop()], 1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


class DenseMotionNetwork(nn.Module):
    def __init__(self, block_expansion=32, num_blocks=5, max_features=1024, num_kp=15, feature_channel=32,
                 reshape_depth=16, compress=4):
        super().__init__()
        self.hourglass = Hourglass3d(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, 1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, 7, padding=3)
        self.num_kp = num_kp

    def forward(self, feature, kp_driving, kp_source):
        bs, _, d, h, w = feature.shape
        feature = F.relu(self.norm(self.compress(feature)))
        k = self.num_kp
        identity = coordinate_grid(d, h, w, feature.device, feature.dtype).view(1, 1, d, h, w, 3)
        to_source = identity - kp_driving.view(bs, k, 1, 1, 1, 3) + kp_source.view(bs, k, 1, 1, 1, 3)
        sparse = torch.cat([identity.repeat(bs, 1, 1, 1, 1, 1), to_source], 1)  # (bs, k+1, d, h, w, 3)
        rep = feature.unsqueeze(1).repeat(1, k + 1, 1, 1, 1, 1).view(bs * (k + 1), -1, d, h, w)
        deformed = F.grid_sample(rep, sparse.view(bs * (k + 1), d, h, w, 3), align_corners=False)
        deformed = deformed.view(bs, k + 1, -1, d, h, w)
        heat = kp2gaussian(kp_driving, (d, h, w), 0.01) - kp2gaussian(kp_source, (d, h, w), 0.01)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], 1).unsqueeze(2)
        pred = self.hourglass(torch.cat([heat, deformed], 2).view(bs, -1, d, h, w))
        mask = F.softmax(self.mask(pred), dim=1).unsqueeze(2)
        mask = torch.where(mask < 1e-3, torch.zeros_like(mask), mask)
        deformation = (sparse.permute(0, 1, 5, 2, 3, 4) * mask).sum(1).permute(0, 2, 3, 4, 1)
        occlusion = torch.sigmoid(self.occlusion(pred.view(bs, -1, h, w)))
        return deformation, occlusion


class SPADE(nn.Module):
    def __init__(self, norm_nc, label_nc):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, 128, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(128, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(128, norm_nc, 3, padding=1)

    def forward(self, x, seg):
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin, fout, label_nc):
        super().__init__()
        self.learned_shortcut = fin != fout
        mid = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, mid, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_nc)
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(mid, label_nc)

    def forward(self, x, seg):
        xs = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 2e-1))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 2e-1))
        return xs + dx


class SPADEDecoder(nn.Module):
    def __init__(self, ic=256, oc=64, label_nc=256, upsamples=2):
        super().__init__()
        self.fc = nn.Conv2d(ic, 2 * ic, 3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * ic, 2 * ic, label_nc))
        self.up_0 = SPADEResnetBlock(2 * ic, ic, label_nc)
        self.up_1 = SPADEResnetBlock(ic, oc, label_nc)
        self.conv_img = nn.Conv2d(oc, 3, 3, padding=1)
        self.upsamples = upsamples

    def forward(self, feature):
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 2e-1)))


class OcclusionAwareSPADEGenerator(nn.Module):
    def __init__(self, image_channel=3, feature_channel=32, num_kp=15, block_expansion=64, max_features=512,
                 num_down_blocks=2, reshape_channel=32, reshape_depth=16, num_resblocks=6):
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, feature_channel=feature_channel,
                                                       reshape_depth=reshape_depth)
        self.first = SameBlock2d(image_channel, block_expansion)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block_expansion * 2 ** i), min(max_features, block_expansion * 2 ** (i + 1)))
            for i in range(num_down_blocks))
        out_features = min(max_features, block_expansion * 2 ** num_down_blocks)
        self.second = nn.Conv2d(out_features, max_features, 1)
        self.reshape_channel, self.reshape_depth = reshape_channel, reshape_depth
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))
        out_features = block_expansion * 2 ** num_down_blocks
        self.third = SameBlock2d(max_features, out_features, lrelu=True)
        self.fourth = nn.Conv2d(out_features, out_features, 1)
        self.decoder = SPADEDecoder()

    def forward(self, source, kp_driving, kp_source):
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        bs, c, h, w = out.shape
        feat = self.resblocks_3d(out.view(bs, self.reshape_channel, self.reshape_depth, h, w))
        deformation, occlusion = self.dense_motion_network(feat, kp_driving, kp_source)
        out = F.grid_sample(feat, deformation, align_corners=False)
        out = self.fourth(self.third(out.view(bs, -1, h, w)))
        if occlusion.shape[2:] != out.shape[2:]:
            occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
        return self.decoder(out * occlusion)


class MappingNet(nn.Module):
    def __init__(self, coeff_nc=70, descriptor_nc=1024, layer=3, num_kp=15, num_bins=66):
        super().__init__()
        self.layer = layer
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, 7, padding=0, bias=True))
        for i in range(layer):
            setattr(self, f"encoder{i}", nn.Sequential(nn.LeakyReLU(0.1),
                                                       nn.Conv1d(descriptor_nc, descriptor_nc, 3, dilation=3)))
        self.pooling = nn.AdaptiveAvgPool1d(1)
        self.fc_roll = nn.Linear(descriptor_nc, num_bins)
        self.fc_pitch = nn.Linear(descriptor_nc, num_bins)
        self.fc_yaw = nn.Linear(descriptor_nc, num_bins)
        self.fc_t = nn.Linear(descriptor_nc, 3)
        self.fc_exp = nn.Linear(descriptor_nc, 3 * num_kp)

    def forward(self, x):
        out = self.first(x)
        for i in range(self.layer):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        out = self.pooling(out).flatten(1)
        # SadTalker's naming: its 'yaw' comes from fc_yaw and 'roll' from fc_roll here
        return {"yaw": self.fc_yaw(out), "pitch": self.fc_pitch(out), "roll": self.fc_roll(out),
                "t": self.fc_t(out), "exp": self.fc_exp(out)}


def bins_to_degrees(pred):
    idx = torch.arange(66, dtype=pred.dtype, device=pred.device)
    return (F.softmax(pred, dim=1) * idx).sum(1) * 3 - 99


def rotation_matrix(yaw, pitch, roll):
    y, p, r = (v / 180 * 3.14 for v in (yaw, pitch, roll))
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    pm = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], 1).view(-1, 3, 3)
    ym = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1).view(-1, 3, 3)
    rm = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return torch.einsum("bij,bjk,bkm->bim", pm, ym, rm)


def transform_keypoints(kp_canonical, he):
    rot = rotation_matrix(bins_to_degrees(he["yaw"]), bins_to_degrees(he["pitch"]), bins_to_degrees(he["roll"]))
    kp = torch.einsum("bmp,bkp->bkm", rot, kp_canonical)
    t = he["t"].clone()
    t[:, 0] = 0
    t[:, 2] = 0
    return kp + t.unsqueeze(1) + he["exp"].view(he["exp"].shape[0], -1, 3)


# ------------------------------------------------------------------------------------------------ 3DMM


class ReconNet(nn.Module):
    """Deep3DFaceRecon's ResNet-50 with seven 1x1 heads: id 80, exp 64, tex 80, angle 3, gamma 27, t 2 + 1."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.backbone = torchvision.models.resnet50(weights=None)
        self.backbone.fc = nn.Identity()
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, n, 1, bias=True) for n in (80, 64, 80, 3, 27, 2, 1))

    def forward(self, x):
        f = self.backbone(x).view(x.shape[0], 2048, 1, 1)
        return torch.cat([layer(f) for layer in self.final_layers], 1).flatten(1)  # (B, 257)
