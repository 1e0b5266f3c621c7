"""Small real images of every kind a step shows, made without an image library.

PNG and GIF are encoded here (PNG: zlib; GIF: LZW with a clear code often
enough that codes stay 8 bits wide); the JPEG was made once by Chromium
(``canvas.toDataURL("image/jpeg")`` of a 96x48 gradient) and is kept as
base64.  The SVG is text.
"""

from __future__ import annotations

import base64
import struct
import zlib


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def gif(width: int, height: int, colours: list[tuple[int, int, int]]) -> bytes:
    """A GIF of horizontal stripes, one per colour (at most 128 colours)."""
    palette = colours + [(0, 0, 0)] * (128 - len(colours))
    pixels = [min(len(colours) - 1, y * len(colours) // height) for y in range(height) for _ in range(width)]
    clear, end = 128, 129
    codes: list[int] = []
    for start in range(0, len(pixels), 100):
        codes.append(clear)
        codes.extend(pixels[start : start + 100])
    codes.append(end)
    bits = 0
    count = 0
    packed = bytearray()
    for code in codes:
        bits |= code << count
        count += 8
        while count >= 8:
            packed.append(bits & 0xFF)
            bits >>= 8
            count -= 8
    blocks = b"".join(bytes([len(packed[i : i + 255])]) + packed[i : i + 255] for i in range(0, len(packed), 255))
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0xF6, 0, 0)
        + b"".join(bytes(c) for c in palette)
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + b"\x07"
        + blocks
        + b"\x00\x3b"
    )


JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/4gHYSUNDX1BST0ZJTEUAAQEAAAHIAAAAAAQwAABtbnRyUkdCIFhZWiAH4AABAAEAAAAAAABh"
    "Y3NwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAA9tYAAQAAAADTLQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAlkZXNjAAAA8AAAACRyWFlaAAABFAAAABRnWFlaAAABKAAAABRiWFlaAAABPAAAABR3dHB0AAAB"
    "UAAAABRyVFJDAAABZAAAAChnVFJDAAABZAAAAChiVFJDAAABZAAAAChjcHJ0AAABjAAAADxtbHVjAAAAAAAAAAEAAAAMZW5VUwAA"
    "AAgAAAAcAHMAUgBHAEJYWVogAAAAAAAAb6IAADj1AAADkFhZWiAAAAAAAABimQAAt4UAABjaWFlaIAAAAAAAACSgAAAPhAAAts9Y"
    "WVogAAAAAAAA9tYAAQAAAADTLXBhcmEAAAAAAAQAAAACZmYAAPKnAAANWQAAE9AAAApbAAAAAAAAAABtbHVjAAAAAAAAAAEAAAAM"
    "ZW5VUwAAACAAAAAcAEcAbwBvAGcAbABlACAASQBuAGMALgAgADIAMAAxADb/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQ"
    "FxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgo"
    "KCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAwAGADASIAAhEBAxEB/8QAGgABAQADAQEAAAAAAAAAAAAABAMF"
    "BgcCCP/EACsQAAIBBAIBAwMDBQAAAAAAAAECAAMEBREGEiEHMUETFVEigbEUJmGRsv/EABoBAAMBAQEBAAAAAAAAAAAAAAMFBgII"
    "BAf/xAAiEQACAQMEAwEBAAAAAAAAAAAAAQIDBBESEyFBBXGxofH/2gAMAwEAAhEDEQA/ANxeHeIeHefKrYvJB3kHl3kHlBbAJB3h"
    "3iHh3lBbAJB3kHl3kHj+2ASDvDvEPDvKC2ASIPDvEPDvKC2ASOqvDvEPDvOYLYo5ElAaqgPsWAM3DmuBxuOzeGt7O2+nRuHAqr9R"
    "j2HYD3J8eD8TUKQ3cUwPfsP5nQvUY/3Lx4fP1B/2srPHxi6M212vorupyVaCT6l8POZxXEsZmbTGXGJuGq3IUo9Oq5A2xA3+vfx+"
    "Ji34fj7T1Bs8bVVq+PuaL1RTZyCug3jY0fcTOeoHK77AZShb2VG1YVKAfvVQlgexHjRHjxNW4PlLzL+oVpdZCsatYpUUHWgo6NoA"
    "D2EfrQp6UvwXU97adRt4w+8/wyWXx3GMdfV7ZuJ5auKR0atI1Sh8b2D3mr8E4nb5qheZPLV2oYuz336eCxA7Hz8ADX+50TkFhzW4"
    "yN19ryNpTx7nVOm6rsLryD+gn8/M1b03v7Kvg8rxjI3C29W4ZxTdiAG7KFIH+QRvXzuMKbaTwYjUltNp5fHbZiql76dO5onF5Smv"
    "sLhXJ/fRc/x+05xX6io3Qkrs6J/E+gOCYbLcUWvQyd5jvsoDVFqK5DdyV0SSAANAzhnIqiVc7kqlJ1em9zUZWU7BBY6Ijrx805uK"
    "5XvJulNOTSeV7yYl4d4h4d5VWxqR1V4d4h4d5zBbFHIdx7K0cPfNc1rGneHrpFcgdG2D2Hg+fENybN3Gdv8A+puQqBV6JTX2UQTy"
    "Dyktqs9Cp54PJKlDXuY5DvDvEPDvHlsYkHeQeXeQeP7YBIO8O8Q8O8oLYBIg8O8Q8O8oLYBI/9k="
)
"""A 96x48 JPEG (Chromium's encoder)."""

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60" viewBox="0 0 120 60">'
    b'<rect width="120" height="60" rx="8" fill="#0f766e"/>'
    b'<text x="60" y="38" font-size="20" text-anchor="middle" fill="#fff" font-family="sans-serif">SVG</text>'
    b"<script>document.title = 'svg script ran'</script></svg>"
)
"""An SVG that tries to run a script (it must not, however it is shown)."""
