#!/usr/bin/env python3
"""Writes demo.png, the image `focus demo` runs on: a 256x256 synthetic scene (sky gradient,
sun, hills, a house) drawn with the standard library only, so it is reproducible anywhere.
Usage: python3 tools/assets/make_demo_image.py [OUT]"""
import math
import struct
import sys
import zlib

W = H = 256


def pixel(x, y):
    # Sky: vertical gradient.
    t = y / H
    r, g, b = 90 + 80 * t, 150 + 60 * t, 235 - 30 * t
    # Sun with a soft edge.
    d = math.hypot(x - 196, y - 56)
    if d < 30:
        r, g, b = 255, 214, 80
    elif d < 36:
        k = (d - 30) / 6
        r, g, b = 255 * (1 - k) + r * k, 214 * (1 - k) + g * k, 80 * (1 - k) + b * k
    # Two hills.
    if y > 170 + 25 * math.sin(x / 40.0) or y > 200 - 0.002 * (x - 60) ** 2:
        shade = 0.75 + 0.25 * math.sin(x / 9.0) * math.cos(y / 7.0)
        r, g, b = 60 * shade, 150 * shade, 60 * shade
    # A house: walls, roof, door.
    if 60 <= x < 120 and 140 <= y < 190:
        r, g, b = 200, 170, 130
        if 82 <= x < 98 and 160 <= y < 190:
            r, g, b = 110, 60, 30
    if 110 <= y < 140 and abs(x - 90) <= (y - 110) * 1.2:
        r, g, b = 170, 40, 40
    return bytes(int(max(0, min(255, v))) for v in (r, g, b))


def chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "demo.png"
    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(W)) for y in range(H))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(out, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main()
