"""Directories of PNG images, written and read as IFT6135's score_fid.py reads samples:
`write_png_directory` (atomic) and `read_png_directory` (checked size and mode)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import IMAGE_SIZE, validate_images

# --- directories of PNG images (samples for the FID command, as IFT6135's score_fid.py reads them) --

PNG_SUFFIX = ".png"


def _to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8, rounded to the nearest of 256 levels."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_png_directory(images: torch.Tensor, directory: Path | str, overwrite: bool = False) -> list[Path]:
    """Write images (N, C, S, S) in [0, 1] (C = 1 grey or 3 RGB) as 00000.png, 00001.png, ... into
    `directory`, atomically as a whole: they are written into a temporary folder beside it that is
    renamed into place, so an interrupted call leaves no half-filled directory. An existing
    non-empty `directory` is an error unless `overwrite` (then it is replaced). Returns the paths."""
    from PIL import Image
    import shutil
    import tempfile
    validate_images(images, channels=(1, 3), size=images.shape[-1] if images.dim() == 4 else IMAGE_SIZE)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"{directory} is not empty; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        pixels = _to_uint8_hwc(images)
        width = max(5, len(str(len(pixels) - 1)))
        names = [f"{i:0{width}d}{PNG_SUFFIX}" for i in range(len(pixels))]
        for name, p in zip(names, pixels):
            Image.fromarray(np.ascontiguousarray(p[:, :, 0] if p.shape[2] == 1 else p)).save(tmp / name)
        tmp.chmod(0o755)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{tmp.name}")
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [directory / name for name in names]


def png_files(directory: Path | str) -> list[Path]:
    """The PNG files of `directory` and of its immediate subdirectories (IFT6135's score_fid.py
    reads `sample_directory/samples/*.png`), sorted; hidden files are skipped. Errors: a missing
    directory, one without PNGs, or any other file in it (a non-image file is a clear error, not
    something silently left out of the score)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no directory {directory}")
    files, others = [], []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        for f in (sorted(entry.iterdir()) if entry.is_dir() else [entry]):
            if f.name.startswith(".") or f.is_dir():
                continue
            (files if f.suffix.lower() == PNG_SUFFIX else others).append(f)
    if others:
        shown = ", ".join(str(f.relative_to(directory)) for f in others[:5])
        raise ValueError(f"{directory} holds files that are not PNG images: {shown}"
                         f"{' ...' if len(others) > 5 else ''}; it must hold only the samples as .png files")
    if not files:
        raise ValueError(f"{directory} holds no .png images (looked in it and its subdirectories)")
    return files


def read_png_directory(directory: Path | str, channels: int, size: int) -> torch.Tensor:
    """All PNGs of `directory` (`png_files`) as (N, channels, size, size) float32 in [0, 1].

    channels 1: grey images (PIL mode "L" or "1"; an RGB image whose three channels are equal, as
    torchvision's save_image writes grey images, is accepted as grey). channels 3: RGB images.
    A file that is not a readable PNG, of another size or of another colour mode is a ValueError
    naming the file and what was expected."""
    from PIL import Image, UnidentifiedImageError
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    want = f"{size}x{size} {'greyscale' if channels == 1 else 'RGB'}"
    arrays = []
    for f in png_files(directory):
        try:
            with Image.open(f) as img:
                img.load()
                mode, (w, h) = img.mode, img.size
                if img.format != "PNG":
                    raise ValueError(f"{f} is a {img.format} image, not a PNG")
                if (w, h) != (size, size):
                    raise ValueError(f"{f} is {w}x{h}, expected {want} images")
                if channels == 1 and mode in ("L", "1"):
                    a = np.asarray(img.convert("L"))[None]
                elif channels == 1 and mode == "RGB":
                    rgb = np.asarray(img)
                    if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                        raise ValueError(f"{f} is a colour (RGB) image, expected {want} images")
                    a = rgb[..., 0][None]
                elif channels == 3 and mode == "RGB":
                    a = np.asarray(img).transpose(2, 0, 1)
                else:
                    raise ValueError(f"{f} has colour mode {mode!r}, expected {want} images")
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{f} is not a readable PNG image ({exc})") from exc
        arrays.append(a)
    return torch.from_numpy(np.stack(arrays)).float().div_(255.0)
